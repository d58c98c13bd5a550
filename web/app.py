"""The Gradio search page around a ``SearchEngine``.

Named API endpoints (usable with ``gradio_client``, see the README):

- ``/search`` (query, image, k, min_relevance, text_weight, folder, date_from, date_to, camera)
  -> (gallery, hits as JSON, status)
- ``/more_like_this`` (path, k, min_relevance, folder, date_from, date_to, camera) -> the same three outputs
- ``/stats`` () -> what the index holds
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from mmsearch import SearchEngine
from mmsearch.config import MIN_RELEVANCE
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.ingest.handoff import JobDesk
from mmsearch.media.thumbnails import ThumbnailCache
from mmsearch.present import profile_label

if TYPE_CHECKING:
    from mmsearch.ingest.watch import LibraryWatcher

from .albums_panel import albums_panel
from .duplicates_panel import duplicates_panel
from .guard import LoginGate, LoginThrottle, MarkBudget, allowed_hosts, client_of, original_route, trust_proxy_headers
from .views import (
    SORTS,
    SearchForm,
    example_paths,
    hit_details,
    marks_markdown,
    run_search,
    run_similar,
    stats_markdown,
    thumbnail_of,
    video_player,
)

# A click on a tile opens its larger view below the gallery: bring it to where the user looks.
SHOW_DETAILS_JS = ("() => { const view = document.querySelector('#selected-row');"
                   " if (view) view.scrollIntoView({block: 'start', behavior: 'instant'}); }")
WATCH_REFRESH = 3.0  # seconds between refreshes of the watcher's line in the Index panel
MAX_FILE_SIZE = "25mb"  # largest upload accepted (query images)
SEARCH_CONCURRENCY = 4  # searches answered at once; the rest wait in the queue
# Folder filter entries the page holds. With a million photos' 40,000 folders listed, opening the page took 16 s
# and each search 2-10 s in Chromium, where the server answered in 0.2 s: the time went in the page. A larger
# library lists its largest folders; any other is typed in whole (``folder_choices``).
FOLDER_CHOICES = 500
EXAMPLES = ("a red bicycle", "一只猫", "ein Hund am Strand")
OFFLINE_EXAMPLES = ("a red bicycle", "a cat on a sofa", "IMG_0042.jpg")  # the offline text model knows English only
PREVIEW_HEIGHT = 480  # px of the larger view; smaller images are shown at their own size, not in a huge panel
# Tiles show an image whole and never enlarged, on a neutral chequer that shows transparency, at a fixed
# size however many there are (three rows fit a 1280x800 screen, two columns a phone), with no scrolling
# inside the gallery. Under each, two lines: the file's name (its end kept: "…/legacy/face-monkey.png") and
# how well it matches. Gradio's own caption stays in the page (its text, for the API and tests), hidden.
CSS = """
#profile h1 { display: inline; font-size: 1.35rem; margin: 0 .6em 0 0; }
#profile p { display: inline; }
:is(#gallery, #duplicates-gallery) .thumbnail-item {
  background: repeating-conic-gradient(#f2f2f2 0% 25%, #e4e4e4 0% 50%) 50% / 16px 16px; }
:is(#gallery, #duplicates-gallery) .thumbnail-item img { object-fit: scale-down !important; }
:is(#gallery, #duplicates-gallery) .grid-wrap { max-height: none !important; min-height: 0 !important;
  overflow-y: visible !important; }
#gallery .grid-container { grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)) !important;
  grid-auto-rows: auto !important; grid-template-rows: none !important; }
#gallery .thumbnail-item { position: relative; aspect-ratio: 1 / 1; height: auto !important; width: 100%; }
#gallery .caption-label { display: none !important; }
#duplicates-gallery .caption-label { white-space: normal !important; overflow: hidden; display: -webkit-box;
  -webkit-line-clamp: 2; -webkit-box-orient: vertical; max-width: 100% !important; line-height: 1.25; }
.mm-label { font-size: 12px; line-height: 16px; padding: 3px 2px 0; cursor: pointer; }
.mm-label div { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.mm-label .mm-name { direction: rtl; text-align: left; }
.mm-label .mm-why { color: var(--body-text-color-subdued); }
.mm-strong { color: #1a7f37; font-weight: 600; }
.mm-weak { color: #9a6700; }
#preview img { object-fit: scale-down !important; }
.mm-tile-marks { position: absolute; top: 4px; right: 4px; display: flex; gap: 4px; z-index: 5; }
.mm-tile-marks span { background: rgba(255,255,255,.9); border-radius: 6px; padding: 0 5px; cursor: pointer;
  font-size: 13px; line-height: 20px; box-shadow: 0 1px 2px rgba(0,0,0,.25); }
@media (max-width: 699px) {
  #gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  .mm-tile-marks { top: 3px; right: 3px; gap: 3px; }
  .mm-tile-marks span { font-size: 12px; line-height: 18px; padding: 0 4px; }
}
.mm-hidden { display: none !important; }
"""
# One-click marks on the tiles: each tile gets ✓/✗; a click writes "like:N" or "unlike:N" (N = the tile's
# position) into a hidden box and presses a hidden button. The server maps N to its own hits of the session.
TILE_MARKS_JS = """
() => {
  // On a phone the filters start folded: the query box and the results come first.
  const fold = (tries) => {
    const head = document.querySelector('#filters > .label-wrap, #filters button.label-wrap');
    if (!head) { if (tries > 0) setTimeout(() => fold(tries - 1), 100); return; }
    if (window.innerWidth < 700 && head.classList.contains('open')) head.click();
  };
  fold(50);
  const send = (kind, index) => {
    const box = document.querySelector('#tile-mark textarea');
    box.value = kind + ':' + index;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => document.querySelector('#tile-mark-button').click(), 50);
  };
  // Two lines under a tile, from Gradio's caption "name · relevance · …": the name, then the rest.
  const label = (tile) => {
    const text = (tile.querySelector('.caption-label') || {}).textContent || '';
    const item = tile.parentElement;
    let box = item.querySelector(':scope > .mm-label');
    if (box && box.dataset.text === text) return;
    if (!box) {
      box = document.createElement('div');
      box.className = 'mm-label';
      box.addEventListener('click', () => tile.click());
      item.appendChild(box);
    }
    const cut = text.indexOf(' · ');
    const name = cut < 0 ? text : text.slice(0, cut), why = cut < 0 ? '' : text.slice(cut + 3);
    box.dataset.text = text; box.title = text; box.replaceChildren();
    for (const [cls, line] of [['mm-name', name], ['mm-why', why]]) {
      const div = document.createElement('div');
      div.className = cls;
      const words = document.createElement('bdi');  // the name reads left to right; its start is cut, not its end
      words.textContent = line;
      if (cls === 'mm-why') words.className = line.startsWith('strong') ? 'mm-strong' : line.startsWith('weak') ? 'mm-weak' : '';
      div.appendChild(words);
      box.appendChild(div);
    }
  };
  const decorate = () => {
    document.querySelectorAll('#gallery .thumbnail-item').forEach((tile, index) => {
      label(tile);
      let bar = tile.querySelector('.mm-tile-marks');
      if (!bar) {
        bar = document.createElement('div');
        bar.className = 'mm-tile-marks';
        for (const [kind, mark_label, title] of [['like', '✓', 'relevant'], ['unlike', '✗', 'not relevant']]) {
          const mark = document.createElement('span');
          mark.textContent = mark_label; mark.title = title; mark.className = 'mm-' + kind;
          mark.addEventListener('click', (event) => {
            event.stopPropagation(); event.preventDefault();
            send(kind, [...document.querySelectorAll('#gallery .thumbnail-item')].indexOf(tile));
          });
          bar.appendChild(mark);
        }
        tile.appendChild(bar);
      }
    });
  };
  new MutationObserver(decorate).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


def _readable_upload_errors(component: gr.Image) -> gr.Image:
    """Answer a non-image upload with a sentence in the page instead of a generic error.

    Done on the instance: a ``gr.Image`` subclass would make Gradio write a ``.pyi`` stub beside this module.
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        from PIL import Image

        try:
            return original(payload)
        except Image.DecompressionBombError as exc:
            name = getattr(payload, "orig_name", None) or "The uploaded image"
            raise gr.Error(f"{name} has too many pixels to read safely; use a smaller copy as the query.") from exc
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or "The uploaded file"
            raise gr.Error(f"{name} is not an image mmsearch can read (JPEG, PNG, WebP, GIF, BMP, TIFF).") from exc

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def build_demo(engine: SearchEngine, thumbs: ThumbnailCache | None = None, *, allow_indexing: bool = True,
               title: str = "mmsearch", watcher: LibraryWatcher | None = None) -> gr.Blocks:
    """The page: query box, query image, filters, gallery, larger view with "more like this", index panel."""
    thumbs = thumbs or ThumbnailCache(engine.config.thumbnail_dir)
    facets = engine.facets()
    has_images = engine.has_image_vectors
    with gr.Blocks(title=title) as demo:
        profile = gr.Markdown(f"# {title}\n{profile_label(engine.signature)}", elem_id="profile")
        with gr.Row():
            with gr.Column(scale=3):
                examples, language = (EXAMPLES, "any language") if has_images else (OFFLINE_EXAMPLES, "English")
                with gr.Row(elem_id="query-row"):
                    query = gr.Textbox(label=f"Query ({language})", placeholder=" · ".join(examples), elem_id="query",
                                       scale=6, min_width=200)
                    button = gr.Button("Search", variant="primary", elem_id="search-button", scale=1, min_width=100)
            # Shown only with image vectors; a box around it, so that a reindex to an image model can show it
            # (models_now) without the image itself being an output of the page's load event.
            with gr.Column(scale=2, visible=has_images, min_width=160) as image_box:
                image = gr.Image(label="Query image (optional: upload or paste)", type="filepath", image_mode=None,
                                 sources=["upload", "clipboard"], height=120, elem_id="query-image")
            _readable_upload_errors(image)
        hint = ("Type what you are looking for" + (" in any language, or add an image" if has_images else " in English")
                + "; dates and places work too (“beach Lisbon 2019”).")
        status = gr.Markdown(hint if engine.store.ready and engine.store.count() else
                             "The index is empty: index a folder (Index panel below, or `mmsearch index FOLDER`).",
                             elem_id="status", label="status")
        understood = gr.CheckboxGroup([], value=[], label="Understood (untick one to search without it)",
                                      visible=False, elem_id="understood")
        # The results, with the filters and the marks beside them on a wide screen and after them on a phone
        # (the row wraps): the query and the results come first, and three rows of tiles fit a laptop's screen.
        with gr.Row(equal_height=False, elem_id="results-row"):
            with gr.Column(scale=4, min_width=320, elem_id="results-column"):
                gallery = gr.Gallery(show_label=False, columns=6, height="auto", object_fit="scale-down",
                                     allow_preview=False, fit_columns=False, buttons=[], elem_id="gallery")
            with gr.Column(scale=1, min_width=250, elem_id="side-column"):
                with gr.Accordion("Results and filters", open=True, elem_id="filters"):
                    k = gr.Slider(1, 100, value=12, step=1, label="Results")
                    min_relevance = gr.Slider(0, 1, value=MIN_RELEVANCE, step=0.05, elem_id="min-relevance",
                                              label="Relevance at least (0 shows the nearest, however weak)")
                    text_weight = gr.Slider(0, 1, value=0.5, step=0.05, label="Text vs image (with both)",
                                            visible=has_images)
                    folder = gr.Dropdown(folder_choices(facets), value=None, label="Folder (images in it and below)",
                                         allow_custom_value=True, elem_id="folder-filter")
                    with gr.Row():
                        date_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="date-from", min_width=100)
                        date_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="date-to", min_width=100)
                    camera = gr.Dropdown(facets["cameras"], value=None, label="Camera", allow_custom_value=True,
                                         visible=bool(facets["cameras"]))
                    places = place_choices(engine.places.facet())
                    place = gr.Dropdown(places, value=None, label="Place", allow_custom_value=True,
                                        visible=bool(places), elem_id="place-filter")
                    order = gr.Radio(list(SORTS), value="best match", label="Order", elem_id="order")
                with gr.Group(visible=False, elem_id="marks-box") as marks_row:  # shown once there are results
                    marks = gr.Markdown(elem_id="marks")
                    # A read-only page writes nothing: marks refine the search in view, never the index.
                    remember = gr.Checkbox(allow_indexing, label="Remember marks for later searches (kept in the "
                                           "index, on this machine)", elem_id="remember", visible=allow_indexing,
                                           interactive=allow_indexing)
                    with gr.Row():
                        refine = gr.Button("Refine with marks", elem_id="refine", size="sm", min_width=100)
                        clear = gr.Button("Clear marks", elem_id="clear-marks", size="sm", min_width=100)
        like, unlike = gr.JSON([], visible=False, label="like"), gr.JSON([], visible=False, label="unlike")
        tile_mark = gr.Textbox(elem_id="tile-mark", elem_classes="mm-hidden", show_label=False, container=False)
        tile_mark_button = gr.Button("mark", elem_id="tile-mark-button", elem_classes="mm-hidden")
        hits = gr.JSON(visible=False, label="hits")
        # The hits behind the gallery, kept on the server per session: a click names a position in them,
        # so no path ever comes from the browser (a forged event cannot name another file).
        shown = gr.State([])
        with gr.Row(visible=False, elem_id="selected-row") as selected_row:
            with gr.Column(scale=3):
                preview = gr.Image(label="Selected", interactive=False, height=PREVIEW_HEIGHT, elem_id="preview")
                player = gr.HTML(visible=False, elem_id="player")
            with gr.Column(scale=2):
                details = gr.Markdown(elem_id="details")
                with gr.Row():
                    mark_like = gr.Button("✓ Relevant", elem_id="mark-like", size="sm")
                    mark_unlike = gr.Button("✗ Not relevant", elem_id="mark-unlike", size="sm")
                more = gr.Button("More like this", visible=has_images, elem_id="more-like-this")
        selected = gr.Textbox(visible=False)
        _index_panel(demo, engine, allow_indexing, folder, camera, watcher)
        duplicates_panel(engine, thumbs, allow_indexing, folder)
        albums_panel(engine, thumbs, allow_indexing, query, [folder, date_from, date_to, camera])

        filters = [folder, date_from, date_to, camera]
        outputs = [gallery, hits, status, shown]

        # Argument names are the API's parameter names (gradio_client keyword arguments).
        def search(query: str, image: str | None = None, k: float = 12, min_relevance: float = MIN_RELEVANCE,
                   text_weight: float = 0.5, folder: str | None = None, date_from: str | None = None,
                   date_to: str | None = None, camera: str | None = None, like: list[str] | None = None,
                   unlike: list[str] | None = None, place: str | None = None, order: str = "best match") -> tuple:
            form = SearchForm(query, image, k, min_relevance, text_weight, folder, date_from, date_to, camera, like,
                              unlike, place, order)
            return run_search(engine, thumbs, form).as_outputs()

        budget = MarkBudget()

        def marker(relevant: bool) -> Any:
            def mark(query: str, path: str, liked: list[str], unliked: list[str], keep: bool,
                     request: gr.Request) -> tuple:
                try:
                    liked, unliked = example_paths(liked), example_paths(unliked, "unlike")
                    if not path:
                        return liked, unliked, marks_markdown(liked, unliked)
                    if not isinstance(path, str):
                        raise QueryError(f"mark an indexed image by its path, got {str(path)[:80]!r}")
                    liked = [p for p in liked if p != path] + ([path] if relevant else [])
                    unliked = [p for p in unliked if p != path] + ([] if relevant else [path])
                    if keep and allow_indexing and isinstance(query, str) and query.strip():
                        if budget.allows(client_of(request)):
                            engine.feedback(query, path, relevant)
                        else:
                            gr.Warning(budget.refusal)
                except MMSearchError as exc:
                    raise gr.Error(str(exc)) from exc
                return liked, unliked, marks_markdown(liked, unliked)
            return mark

        def mark_tile(tile: str, found: list[dict], query: str, liked: list[str], unliked: list[str],
                      keep: bool, request: gr.Request) -> tuple:
            kind, _, position = (tile or "").partition(":")
            index = int(position) if position.isdigit() else -1
            if kind not in ("like", "unlike") or not 0 <= index < len(found or []):
                return liked, unliked, marks_markdown(liked, unliked)
            return marker(kind == "like")(query, found[index]["file"], liked, unliked, keep, request)

        def forget(query: str, liked: list[str], unliked: list[str], keep: bool) -> tuple:
            if keep and allow_indexing and isinstance(query, str) and query.strip():
                try:
                    for path in [*example_paths(liked), *example_paths(unliked, "unlike")]:
                        engine.forget_feedback(path=path, query=query)
                except MMSearchError as exc:
                    raise gr.Error(str(exc)) from exc
            return [], [], ""

        def similar(path: str, k: float = 12, min_relevance: float = MIN_RELEVANCE, folder: str | None = None,
                    date_from: str | None = None, date_to: str | None = None, camera: str | None = None) -> tuple:
            form = SearchForm(k=k, min_relevance=min_relevance, folder=folder, date_from=date_from, date_to=date_to,
                              camera=camera)
            return run_similar(engine, thumbs, path, form).as_outputs()

        def select(found: list[dict], query: str, keep: bool, evt: gr.SelectData) -> tuple:
            index = evt.index if isinstance(evt.index, int) else -1
            if not 0 <= index < len(found or []):
                return gr.Row(visible=False), None, gr.HTML(visible=False), "", ""
            hit = found[index]
            try:
                large = thumbnail_of(thumbs, hit["file"], hit.get("metadata", {}), "preview")
            except MMSearchError:
                large = None
            # A 48 px icon in a 480 px panel is lost: the panel fits small images (with room for its label).
            height = min(PREVIEW_HEIGHT, max(160, int(hit.get("metadata", {}).get("height") or PREVIEW_HEIGHT) + 60))
            details = hit_details(hit, query if keep and allow_indexing else "")
            video = video_player(hit)
            return (gr.Row(visible=True), gr.Image(value=large, height=height, visible=not video),
                    gr.HTML(value=video, visible=bool(video)), details, hit["file"])

        search_inputs = [query, image, k, min_relevance, text_weight, *filters, like, unlike, place, order]
        def chips(text: str) -> gr.CheckboxGroup:
            """What the query was understood as, one removable chip each (``understand.Understood.chips``)."""
            try:
                found = engine.understand(text or "") if (text or "").strip() else None
            except MMSearchError:
                found = None
            labels = [label for label, _ in found.chips] if found is not None else []
            return gr.CheckboxGroup(choices=labels, value=labels, visible=bool(labels))

        def drop_chips(kept: list[str], text: str) -> str:
            """The query without the words of the chips the user unticked."""
            from mmsearch.search.understand import without

            try:
                found = engine.understand(text or "")
            except MMSearchError:
                return text
            for label, typed in found.chips:
                if label not in (kept or []):
                    text = without(text, typed)
            return text

        def after_search(text: str) -> tuple:
            return chips(text), gr.Row(visible=True)

        button.click(search, search_inputs, outputs, api_name="search").then(
            after_search, [query], [understood, marks_row], api_visibility="private")
        query.submit(search, search_inputs, outputs, api_visibility="private").then(
            after_search, [query], [understood, marks_row], api_visibility="private")
        refine.click(search, search_inputs, outputs, api_visibility="private")
        understood.input(drop_chips, [understood, query], [query], api_visibility="private").then(
            search, search_inputs, outputs, api_visibility="private").then(
            chips, [query], [understood], api_visibility="private")
        mark_inputs, mark_outputs = [query, selected, like, unlike, remember], [like, unlike, marks]
        mark_like.click(marker(True), mark_inputs, mark_outputs, api_name="like")
        mark_unlike.click(marker(False), mark_inputs, mark_outputs, api_name="unlike")
        clear.click(forget, [query, like, unlike, remember], mark_outputs, api_visibility="private")
        tile_mark_button.click(mark_tile, [tile_mark, shown, query, like, unlike, remember], mark_outputs,
                               api_visibility="private")
        gallery.select(select, [shown, query, remember], [selected_row, preview, player, details, selected],
                       api_visibility="private").then(None, None, None, js=SHOW_DETAILS_JS)
        more.click(similar, [selected, k, min_relevance, *filters], outputs, api_name="more_like_this")
        gr.api(engine.stats, api_name="stats")

        def models_now() -> tuple:
            """After `mmsearch reindex` switched the models, a reloaded page names them and shows their
            controls (the query image and its weight only with image vectors). The query box keeps the label
            it was built with (updating it could race with typing)."""
            pixels = engine.has_image_vectors
            header = f"# {title}\n{profile_label(engine.signature)}"
            if pixels == has_images:  # as built
                return header, gr.skip(), gr.skip()
            return header, gr.update(visible=pixels), gr.update(visible=pixels)

        demo.load(models_now, None, [profile, image_box, text_weight], api_visibility="private")
    return demo


def _index_panel(demo: gr.Blocks, engine: SearchEngine, allow_indexing: bool, folder: gr.Dropdown,
                 camera: gr.Dropdown, watcher: LibraryWatcher | None = None) -> None:
    """Index facts, and (when allowed) an index run of a folder with a progress bar; searches go on meanwhile.
    With a watcher, what it does, refreshed every few seconds."""
    label = profile_label(engine.signature)
    with gr.Accordion("Index", open=False):
        facts = gr.Markdown(stats_markdown(engine.stats(), label), elem_id="index-facts")
        if watcher is not None:
            watching = gr.Markdown(f"**Watcher**: {watcher.status.line()}", elem_id="watch-status")
            gr.Timer(WATCH_REFRESH).tick(lambda: f"**Watcher**: {watcher.status.line()}", None, watching,
                                         api_visibility="private", show_progress="hidden")
        demo.load(lambda: stats_markdown(engine.stats(), profile_label(engine.signature)), None, facts,
                  api_visibility="private")
        with gr.Row(visible=allow_indexing):
            target = gr.Textbox(label="Folder to index (on the server)", scale=4, elem_id="index-folder")
            start = gr.Button("Index folder", scale=1, elem_id="index-button")
        outcome = gr.Markdown(elem_id="index-outcome")

    def run(path: str, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's injection idiom
        if not allow_indexing:
            raise gr.Error("Indexing from the page is switched off for this server (--read-only).")
        path = os.path.abspath(os.path.expanduser((path or "").strip()))
        if not os.path.isdir(path):
            return f"⚠️ {path} is not a folder on the server.", gr.skip(), gr.skip(), gr.skip()
        try:
            report = engine.index([path], on_progress=lambda done, total: progress((done, total), unit="images"))
        except MMSearchError as exc:
            return f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip()
        facets = engine.facets()
        skipped = "".join(f"\n- `{p}`: {why}" for p, why in report.failed[:10])
        return (f"Indexed `{path}`: {report.summary()}{skipped}", stats_markdown(engine.stats(), label),
                gr.Dropdown(choices=folder_choices(facets)),
                gr.Dropdown(choices=facets["cameras"], visible=bool(facets["cameras"])))

    start.click(run, [target], [outcome, facts, folder, camera], api_name="index" if allow_indexing else False,
                concurrency_limit=1, concurrency_id="index")


def _keep_current(engine: SearchEngine, watcher: LibraryWatcher, stop: threading.Event) -> None:
    """``serve --watch``: catch up with what changed while nothing watched, then watch until the page stops."""
    present = [r for r in watcher.roots if os.path.isdir(r)]
    if present:
        try:
            engine.index(present)
        except MMSearchError as exc:
            print(f"mmsearch serve: catching up failed: {exc}", file=sys.stderr)
    watcher.run(stop)


def place_choices(facet: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
    """The Places facet (``PlaceBook.facet``): each country with its photo count, then its cities, indented."""
    return [(f"{'    ' if key.isdigit() else ''}{label} ({count})", key) for key, label, count in facet]


def folder_choices(facets: dict[str, Any], limit: int = FOLDER_CHOICES) -> list[tuple[str, str]]:
    """Folder filter entries: "folder (N images)" shown, the folder itself as the value, in path order; of more
    than ``limit`` folders, the ``limit`` holding the most images (the roots and the years of a photo library
    before its days and albums)."""
    counts, folders = facets["folder_counts"], facets["folders"]
    if len(folders) > limit:
        folders = sorted(heapq.nlargest(limit, folders, key=lambda f: counts[f]))
    return [(f"{folder} ({counts[folder]:,})", folder) for folder in folders]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def indexing_allowed(host: str, auth: list[tuple[str, str]] | None, read_only: bool) -> bool:
    """Index runs from the page: on by default, off with ``read_only`` or when strangers could reach the page."""
    return not read_only and (is_loopback(host) or bool(auth))


def allowed_paths(thumbs: ThumbnailCache) -> list[str]:
    """The only folder Gradio's file route hands out: the thumbnails. Originals go through
    ``guard.original_route``, by image id."""
    return [str(thumbs.folder)]


def launch(engine: SearchEngine, host: str = "127.0.0.1", port: int = 7860, *, auth: list[tuple[str, str]] | None = None,
           read_only: bool = False, max_file_size: str = MAX_FILE_SIZE, allowed_host: list[str] | None = None,
           trust_proxy: bool = False, watch: bool = False, poll: bool = False, **kwargs: Any) -> gr.Blocks:
    """Serve the page (blocks until stopped, unless ``prevent_thread_lock=True`` is passed on to Gradio).

    Args:
        engine: the engine to search; this process becomes the database's one writer.
        host: address to bind; 127.0.0.1 (this machine only) unless told otherwise.
        auth: (user, password) pairs that may log in; None serves without a login.
        read_only: no index runs from the page. Also the default on a non-loopback address without ``auth``.
        max_file_size: largest accepted upload, e.g. "25mb".
        allowed_host: more Host header names to answer (e.g. the name a reverse proxy forwards).
        trust_proxy: believe ``X-Forwarded-For`` from a proxy on this machine (``guard.trust_proxy_headers``).
        watch: keep the index current with its folders (``SearchEngine.watcher``), in a thread of this
            process, the one writer; the Index panel shows what the watcher does. ``poll``: without events.
        **kwargs: passed on to ``gr.Blocks.launch``.

    Returns:
        The running app (``close()`` stops it).
    """
    engine.lock_for_writing()  # the page's process owns the database while it serves
    engine.warm_up()  # the first visitor's search does not wait for the vector indexes to load
    trust_proxy_headers(trust_proxy)
    exposed = not is_loopback(host)
    if exposed and not auth:
        print(f"mmsearch serve: {host} is reachable from other machines and there is no --auth: anyone who can reach "
              "it can search these photos; indexing from the page is off", file=sys.stderr)
    allow_indexing = indexing_allowed(host, auth, read_only)
    thumbs = ThumbnailCache(engine.config.thumbnail_dir)
    # Thumbnails are served from where they are, by Gradio's file route: not hashed and copied into its
    # cache for every tile of every search (that was 40 of the page's 130 ms a search at 2,500 icons,
    # benchmarks/page_bench.py). Thumbnails never change in place: an edited photo gets a new file.
    gr.set_static_paths(allowed_paths(thumbs))
    watcher = engine.watcher(poll=poll) if watch else None
    demo = build_demo(engine, thumbs, allow_indexing=allow_indexing, watcher=watcher)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    blocking = not kwargs.pop("prevent_thread_lock", False)
    quiet = kwargs.pop("quiet", False)
    app_kwargs = {"routes": [original_route(engine, remember=allow_indexing)],
                  "middleware": [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, allowed_host)),
                                 Middleware(LoginThrottle), Middleware(LoginGate)]}
    demo.launch(server_name=host, server_port=port, auth=auth, allowed_paths=allowed_paths(thumbs),
                max_file_size=max_file_size, show_error=False, app_kwargs=app_kwargs, prevent_thread_lock=True,
                quiet=True, css=CSS, js=TILE_MARKS_JS, **kwargs)
    # `mmsearch reindex` elsewhere (or handed to this process, mmsearch.ingest.handoff): answer with the new models.
    watching = engine.watch_switches(on_tick=JobDesk(engine).poll)
    if watcher is not None:
        threading.Thread(target=_keep_current, args=(engine, watcher, watching), name="mmsearch-watch",
                         daemon=True).start()
    close = demo.close

    def close_and_stop_watching(*args: Any, **options: Any) -> Any:
        watching.set()
        return close(*args, **options)

    demo.close = close_and_stop_watching  # type: ignore[method-assign]
    if not quiet:
        print(f"mmsearch serve: {demo.local_url} (Ctrl-C stops)", file=sys.stderr)
    if blocking:
        demo.block_thread()
    return demo
