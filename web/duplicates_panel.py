"""The page's **Duplicates** panel: groups of one photo shown as thumbnails with the suggested keeper and
why, and (when page indexing is allowed) a move of the other files of one group, or of all, to a folder.

The groups live in the session's server-side state; a move names a group by its number in them and a
folder, never file paths from the browser. A move is of the group in view (the one whose tile was
clicked last, else the first) unless all groups are picked, and it is asked for first ("Move 38 files of
12 groups to ...? This can be undone"). Nothing is deleted: the outcome offers Undo, here, and names the
manifest that ``mmsearch duplicates --undo`` reverses (handed to this server while it runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from mmsearch.errors import ImageReadError, MMSearchError

from .views import THUMBNAIL_THREADS

if TYPE_CHECKING:
    from mmsearch import DuplicateGroup, SearchEngine
    from mmsearch.media.thumbnails import ThumbnailCache

ALL = "all groups"
SHOWN_GROUPS = 50  # groups listed in the summary
SHOWN_TILES = 48  # tiles per page of the panel; 727 groups of an icon theme were 4,029 thumbnails (125 s at once)


def pages(groups: list[DuplicateGroup], most: int = SHOWN_TILES) -> list[tuple[int, int]]:
    """The panel's pages: (first, end) group indices, whole groups only, up to about ``most`` tiles each."""
    out: list[tuple[int, int]] = []
    start = tiles = 0
    for n, group in enumerate(groups):
        if tiles and tiles + len(group.members) > most:
            out.append((start, n))
            start, tiles = n, 0
        tiles += len(group.members)
    if start < len(groups):
        out.append((start, len(groups)))
    return out


def group_tiles(groups: list[DuplicateGroup], thumbs: ThumbnailCache, most: int = SHOWN_TILES,
                page: int = 0) -> list[tuple[str, str]]:
    """The gallery tiles of one page (``pages``): each group's keeper first ("KEEP"), then its copies with how
    they match, numbered as in the summary. Missing thumbnails are made a few at a time, as the search's are."""
    from concurrent.futures import ThreadPoolExecutor

    spans = pages(groups, most)
    if not 0 <= page < len(spans):
        return []
    first, end = spans[page]
    members = [(n, m) for n in range(first, end) for m in groups[n].members]

    def thumb(member: Any) -> str | None:
        try:
            return str(thumbs.get(member.path))
        except ImageReadError:
            return None

    with ThreadPoolExecutor(THUMBNAIL_THREADS) as pool:
        made = list(pool.map(thumb, [m for _, m in members]))
    tiles: list[tuple[str, str]] = []
    for (n, member), path in zip(members, made):
        if path is None:
            continue
        how = "KEEP" if member.kind == "keeper" else f"{member.kind}, {member.hash_distance} bits"
        tiles.append((path, f"group {n + 1} · {how} · {Path(member.path).parent.name}/{Path(member.path).name} · "
                            f"{member.width}×{member.height}"))
    return tiles


def page_line(groups: list[DuplicateGroup], page: int, most: int = SHOWN_TILES) -> str:
    """Where the page in view is among the groups, e.g. "groups 1–12 of 727 (page 1 of 61)"."""
    spans = pages(groups, most)
    if len(spans) < 2:
        return ""
    first, end = spans[page]
    return f"groups {first + 1}–{end} of {len(groups)} (page {page + 1} of {len(spans)})"


def group_summary(groups: list[DuplicateGroup]) -> str:
    """Markdown: one line per group, keeper and why."""
    if not groups:
        return "No duplicates."
    lines = [f"**{len(groups)} groups**, {sum(len(g.members) - 1 for g in groups)} files beside their keepers."]
    lines += [f"{n}. keep `{g.keep}`: {g.reason}; {len(g.members) - 1} other file(s)"
              for n, g in enumerate(groups[:SHOWN_GROUPS], 1)]
    if len(groups) > SHOWN_GROUPS:
        lines.append(f"\n… and {len(groups) - SHOWN_GROUPS} more groups (page through their tiles below; a move of "
                     "all groups moves every group; `mmsearch duplicates --json` lists them all)")
    return "\n".join(lines)


def group_of_tile(groups: list[DuplicateGroup], index: int, most: int = SHOWN_TILES, page: int = 0) -> int:
    """The number (from 1) of the group a tile of ``group_tiles``'s ``page`` belongs to; 0 when none."""
    spans = pages(groups, most)
    if index < 0 or not 0 <= page < len(spans):
        return 0
    seen = 0
    for n in range(*spans[page]):
        seen += len(groups[n].members)
        if index < seen:
            return n + 1
    return 0


def chosen_groups(groups: list[DuplicateGroup], choice: str) -> list[DuplicateGroup]:
    """The groups a choice of the dropdown names ("all groups" or "group N"); none for anything else."""
    if choice == ALL:
        return list(groups)
    number = choice.split()[-1] if choice else ""
    return [groups[int(number) - 1]] if number.isdigit() and 0 < int(number) <= len(groups) else []


def move_question(groups: list[DuplicateGroup], target: str) -> str:
    """What the page asks before a move."""
    files = sum(len(g.members) - 1 for g in groups)
    return (f"**Move {files} file{'s' if files != 1 else ''} of {len(groups)} group{'s' if len(groups) != 1 else ''}** "
            f"to `{target}`? The keepers stay where they are. This can be undone.")


def duplicates_panel(engine: SearchEngine, thumbs: ThumbnailCache, allow_moves: bool, folder: gr.Dropdown) -> None:
    """The panel, inside the page being built. Moves are offered only when page indexing is allowed."""
    with gr.Accordion("Duplicates", open=False):
        with gr.Row():
            find = gr.Button("Find duplicates (in the folder filter's folder, or everywhere)", elem_id="duplicates-button")
        summary = gr.Markdown(elem_id="duplicates-summary")
        tiles = gr.Gallery(label="Duplicate groups (click a tile to pick its group)", columns=6, height="auto",
                           object_fit="scale-down", allow_preview=False, elem_id="duplicates-gallery", buttons=[])
        with gr.Row(visible=False) as paging:
            earlier = gr.Button("← Earlier groups", size="sm", elem_id="duplicates-earlier", min_width=100)
            where = gr.Markdown(elem_id="duplicates-page")
            later = gr.Button("Later groups →", size="sm", elem_id="duplicates-later", min_width=100)
        with gr.Row(visible=allow_moves):
            which = gr.Dropdown([ALL], value=None, label="Move the other files of", scale=1, elem_id="duplicates-which")
            dest = gr.Textbox(label="to this folder (on the server, outside the indexed folders)", scale=3,
                              elem_id="duplicates-dest")
            move = gr.Button("Move…", scale=1, elem_id="duplicates-move")
        with gr.Column(visible=False) as asking:
            question = gr.Markdown(elem_id="duplicates-question")
            with gr.Row():
                confirm = gr.Button("Yes, move them", variant="stop", size="sm", elem_id="duplicates-confirm")
                cancel = gr.Button("Cancel", size="sm", elem_id="duplicates-cancel")
        outcome = gr.Markdown(elem_id="duplicates-outcome")
        undo = gr.Button("Undo the move", visible=False, size="sm", elem_id="duplicates-undo")
        found = gr.State([])
        shown_page = gr.State(0)
        pending = gr.State({})  # the move asked about: {"choice", "target"}
        manifest = gr.State("")  # the last move's manifest, for Undo (never a path from the browser)

    def look(folder_filter: str | None) -> tuple:
        try:
            groups = engine.duplicates(folder_filter or None)
        except MMSearchError as exc:
            return f"⚠️ {exc}", [], [], gr.Dropdown(choices=[ALL], value=None)
        choices = [*(f"group {n}" for n in range(1, len(groups) + 1)), ALL]
        return (group_summary(groups), group_tiles(groups, thumbs), groups,
                gr.Dropdown(choices=choices, value="group 1" if groups else None))

    def first_page(groups: list[DuplicateGroup]) -> tuple:
        return 0, gr.Row(visible=len(pages(groups)) > 1), page_line(groups, 0)

    def turn(step: int) -> Any:
        def to(groups: list[DuplicateGroup], page: int) -> tuple:
            page = min(max(0, int(page or 0) + step), max(0, len(pages(groups)) - 1))
            first = pages(groups)[page][0] + 1 if groups else 0
            return (group_tiles(groups, thumbs, page=page), page, page_line(groups, page),
                    gr.Dropdown(value=f"group {first}") if first else gr.Dropdown())
        return to

    def pick(groups: list, page: int, evt: gr.SelectData) -> Any:  # hints Gradio can resolve: it looks for SelectData
        number = group_of_tile(groups, evt.index if isinstance(evt.index, int) else -1, page=int(page or 0))
        return gr.Dropdown(value=f"group {number}") if number else gr.Dropdown()

    def ask(groups: list[DuplicateGroup], choice: str, target: str) -> tuple:
        if not allow_moves:
            raise gr.Error("Moving files from the page is switched off for this server (--read-only).")
        chosen, target = chosen_groups(groups, choice), (target or "").strip()
        if not chosen:
            return gr.Column(visible=False), "", {}, "Find duplicates first, then pick a group." if not groups else \
                "Pick the group to move (click one of its tiles), or all groups."
        if not target:
            return gr.Column(visible=False), "", {}, "⚠️ Name the folder to move the files to."
        return gr.Column(visible=True), move_question(chosen, target), {"choice": choice, "target": target}, ""

    def act(groups: list[DuplicateGroup], asked: dict, choice: str, target: str) -> tuple[str, str]:
        if not allow_moves:
            raise gr.Error("Moving files from the page is switched off for this server (--read-only).")
        asked = asked or {"choice": choice, "target": (target or "").strip()}  # the API call is the answer itself
        chosen, target = chosen_groups(groups, str(asked.get("choice", ""))), str(asked.get("target", ""))
        if not chosen or not target:
            return "Find duplicates and pick a group first.", ""
        try:
            written = engine.move_duplicates(chosen, target)
        except MMSearchError as exc:
            return f"⚠️ {exc}", ""
        moved = sum(len(g.members) - 1 for g in chosen)
        return (f"Moved {moved} file{'s' if moved != 1 else ''} to `{target}`. **Undo** puts them back; so does "
                f"`mmsearch duplicates --undo {written}`."), written

    def put_back(written: str) -> tuple[str, str]:
        if not allow_moves:
            raise gr.Error("Moving files from the page is switched off for this server (--read-only).")
        if not written:
            return "Nothing to undo.", ""
        try:
            back, left = engine.undo_duplicate_moves(written)
        except MMSearchError as exc:
            return f"⚠️ {exc}", written
        rest = f"; {len(left)} left where they are (gone, or their place is taken)" if left else "."
        return f"Moved {back} file{'s' if back != 1 else ''} back{rest}", ""

    def settle(written: str) -> tuple:
        """After a move or an undo: the question closes; Undo shows while there is a move to undo."""
        return gr.Column(visible=False), {}, gr.Button(visible=bool(written))

    find.click(look, [folder], [summary, tiles, found, which], api_name="duplicates").then(
        first_page, [found], [shown_page, paging, where], api_visibility="private")
    earlier.click(turn(-1), [found, shown_page], [tiles, shown_page, where, which], api_visibility="private")
    later.click(turn(1), [found, shown_page], [tiles, shown_page, where, which], api_visibility="private")
    tiles.select(pick, [found, shown_page], [which], api_visibility="private")
    move.click(ask, [found, which, dest], [asking, question, pending, outcome], api_visibility="private")
    cancel.click(lambda: (gr.Column(visible=False), {}), None, [asking, pending], api_visibility="private")
    confirm.click(act, [found, pending, which, dest], [outcome, manifest],
                  api_name="move_duplicates" if allow_moves else False, concurrency_limit=1, concurrency_id="index"
                  ).then(settle, [manifest], [asking, pending, undo], api_visibility="private")
    undo.click(put_back, [manifest], [outcome, manifest], api_name="undo_move" if allow_moves else False,
               concurrency_limit=1, concurrency_id="index").then(settle, [manifest], [asking, pending, undo],
                                                                   api_visibility="private")
