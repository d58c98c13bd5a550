"""The page's **Duplicates** panel: groups of one photo shown as thumbnails with the suggested keeper and
why, and (when page indexing is allowed) a move of the other files of one group, or of all, to a folder.

The groups live in the session's server-side state; a move names a group by its number in them and a
folder, never file paths from the browser. Nothing is deleted, and the outcome names the manifest that
``mmsearch duplicates --undo`` reverses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from mmsearch.errors import ImageReadError, MMSearchError

if TYPE_CHECKING:
    from mmsearch import DuplicateGroup, SearchEngine
    from mmsearch.media.thumbnails import ThumbnailCache

ALL = "all groups"
SHOWN_GROUPS = 50  # groups listed in the summary
SHOWN_TILES = 120  # tiles made and sent per look; 727 groups of an icon theme were 4,029 thumbnails (125 s)


def group_tiles(groups: list[DuplicateGroup], thumbs: ThumbnailCache, most: int = SHOWN_TILES) -> list[tuple[str, str]]:
    """Gallery tiles: each group's keeper first ("KEEP"), then its copies with how they match; whole groups
    only, up to about ``most`` tiles."""
    tiles: list[tuple[str, str]] = []
    for n, group in enumerate(groups, 1):
        if tiles and len(tiles) + len(group.members) > most:
            break
        for member in group.members:
            try:
                thumb = str(thumbs.get(member.path))
            except ImageReadError:
                continue
            how = "KEEP" if member.kind == "keeper" else f"{member.kind}, {member.hash_distance} bits"
            tiles.append((thumb, f"group {n} · {how} · {Path(member.path).parent.name}/{Path(member.path).name} · "
                                 f"{member.width}×{member.height}"))
    return tiles


def group_summary(groups: list[DuplicateGroup]) -> str:
    """Markdown: one line per group, keeper and why."""
    if not groups:
        return "No duplicates."
    lines = [f"**{len(groups)} groups**, {sum(len(g.members) - 1 for g in groups)} files beside their keepers."]
    lines += [f"{n}. keep `{g.keep}`: {g.reason}; {len(g.members) - 1} other file(s)"
              for n, g in enumerate(groups[:SHOWN_GROUPS], 1)]
    if len(groups) > SHOWN_GROUPS:
        lines.append(f"\n… and {len(groups) - SHOWN_GROUPS} more groups (the tiles show the first ones; a move of "
                     "all groups moves every group; `mmsearch duplicates --json` lists them all)")
    return "\n".join(lines)


def duplicates_panel(engine: SearchEngine, thumbs: ThumbnailCache, allow_moves: bool, folder: gr.Dropdown) -> None:
    """The panel, inside the page being built. Moves are offered only when page indexing is allowed."""
    with gr.Accordion("Duplicates", open=False):
        with gr.Row():
            find = gr.Button("Find duplicates (in the folder filter's folder, or everywhere)", elem_id="duplicates-button")
        summary = gr.Markdown(elem_id="duplicates-summary")
        tiles = gr.Gallery(label="Duplicate groups", columns=6, height="auto", object_fit="scale-down",
                           allow_preview=False, elem_id="duplicates-gallery")
        with gr.Row(visible=allow_moves):
            which = gr.Dropdown([ALL], value=ALL, label="Move the other files of", scale=1, elem_id="duplicates-which")
            dest = gr.Textbox(label="to this folder (on the server, outside the indexed folders)", scale=3,
                              elem_id="duplicates-dest")
            move = gr.Button("Move", scale=1, elem_id="duplicates-move")
        outcome = gr.Markdown(elem_id="duplicates-outcome")
        found = gr.State([])

    def look(folder_filter: str | None) -> tuple:
        try:
            groups = engine.duplicates(folder_filter or None)
        except MMSearchError as exc:
            return f"⚠️ {exc}", [], [], gr.Dropdown(choices=[ALL], value=ALL)
        choices = [ALL, *(f"group {n}" for n in range(1, len(groups) + 1))]
        return group_summary(groups), group_tiles(groups, thumbs), groups, gr.Dropdown(choices=choices, value=ALL)

    def act(groups: list[DuplicateGroup], choice: str, target: str) -> str:
        if not allow_moves:
            raise gr.Error("Moving files from the page is switched off for this server (--read-only).")
        if not groups:
            return "Find duplicates first."
        if not (target or "").strip():
            return "⚠️ Name the folder to move the files to."
        chosen = groups if choice == ALL else [groups[int(choice.split()[-1]) - 1]]
        try:
            manifest = engine.move_duplicates(chosen, target.strip())
        except MMSearchError as exc:
            return f"⚠️ {exc}"
        moved = sum(len(g.members) - 1 for g in chosen)
        return f"Moved {moved} files to `{target.strip()}`. To put them back: `mmsearch duplicates --undo {manifest}`"

    find.click(look, [folder], [summary, tiles, found, which], api_name="duplicates")
    move.click(act, [found, which, dest], [outcome], api_name="move_duplicates" if allow_moves else False,
               concurrency_limit=1, concurrency_id="index")
