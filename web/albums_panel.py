"""The page's **Albums** panel: the index's smart albums (saved searches that fill themselves) with their
photo counts and how many joined since last looked, an album's photos, saving the current search as an
album in one click, and removing one. Saving and removing need page indexing (they write the index)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from mmsearch.errors import MMSearchError

from .views import thumbnail_of

if TYPE_CHECKING:
    from mmsearch import SearchEngine
    from mmsearch.media.thumbnails import ThumbnailCache


def album_choices(engine: SearchEngine) -> list[tuple[str, str]]:
    """Dropdown entries: "Cats (12 photos, 3 new)", the album's name as the value."""
    return [(f"{a.name} ({len(a.photos)} photos{f', {len(a.new)} new' if a.new else ''})", a.name) for a in engine.albums]


def album_tiles(engine: SearchEngine, thumbs: ThumbnailCache, name: str) -> tuple[list[tuple[str, str]], str]:
    """An album's photos as gallery tiles ("NEW" on those that joined since last looked), and a summary line;
    looking counts as seen."""
    from mmsearch.ids import image_id

    album, photos = engine.album(name)
    metas = engine.store.image_metadata([image_id(p.path) for p in photos])
    tiles = []
    for photo in photos:
        thumb = thumbnail_of(thumbs, photo.path, metas.get(image_id(photo.path), {}))
        if thumb is not None:
            tiles.append((thumb, f"{'NEW · ' if photo.new else ''}{photo.path.rsplit('/', 1)[-1]} · {photo.relevance:.2f}"))
    new = sum(p.new for p in photos)
    return tiles, f"**{album.name}**: {len(photos)} photos, {new} new since you last looked · query “{album.query}”"


def albums_panel(engine: SearchEngine, thumbs: ThumbnailCache, allow_indexing: bool, query: gr.Textbox,
                 filters: list[gr.components.Component]) -> None:
    """The panel (module docstring); ``query`` and ``filters`` are the search form's, for "save as album"."""
    with gr.Accordion("Albums", open=False):
        with gr.Row():
            chosen = gr.Dropdown(album_choices(engine), value=None, label="Album", elem_id="album-choice", scale=3)
            show = gr.Button("Show", elem_id="album-show", scale=1)
            remove = gr.Button("Remove", elem_id="album-remove", scale=1, visible=allow_indexing)
        with gr.Row(visible=allow_indexing):
            name = gr.Textbox(label="Save the current search as an album named", elem_id="album-name", scale=3)
            save = gr.Button("Save as album", elem_id="album-save", scale=1)
        summary = gr.Markdown(elem_id="album-summary")
        gallery = gr.Gallery(columns=6, height="auto", object_fit="scale-down", allow_preview=False, elem_id="album-gallery")

    def open_album(album: str | None) -> tuple:
        if not album:
            return [], "Pick an album."
        try:
            tiles, line = album_tiles(engine, thumbs, album)
        except MMSearchError as exc:
            return [], f"⚠️ {exc}"
        return tiles, line

    def save_album(album: str, text: str, folder: Any, date_from: Any, date_to: Any, camera: Any) -> tuple:
        if not allow_indexing:
            raise gr.Error("Saving albums from the page is switched off for this server (--read-only).")
        try:
            made = engine.add_album(album or "", text or "", folder=folder or None, date_from=(date_from or "").strip() or None,
                                    date_to=(date_to or "").strip() or None, camera=camera or None)
        except MMSearchError as exc:
            return gr.skip(), f"⚠️ {exc}", gr.skip()
        tiles, line = album_tiles(engine, thumbs, made.name)
        return gr.Dropdown(choices=album_choices(engine), value=made.name), line, tiles

    def remove_album(album: str | None) -> tuple:
        if not allow_indexing:
            raise gr.Error("Removing albums from the page is switched off for this server (--read-only).")
        try:
            engine.remove_album(album or "")
        except MMSearchError as exc:
            return gr.skip(), f"⚠️ {exc}", gr.skip()
        return gr.Dropdown(choices=album_choices(engine), value=None), f"Removed album {album!r} (its photos stay indexed).", []

    show.click(open_album, [chosen], [gallery, summary], api_visibility="private")
    chosen.input(open_album, [chosen], [gallery, summary], api_visibility="private")  # not on a save: one look
    save.click(save_album, [name, query, *filters], [chosen, summary, gallery], api_visibility="private",
               concurrency_limit=1, concurrency_id="index")
    remove.click(remove_album, [chosen], [chosen, summary, gallery], api_visibility="private",
                 concurrency_limit=1, concurrency_id="index")
