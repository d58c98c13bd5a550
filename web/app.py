"""Gradio web page around a ``SearchEngine``: a query box, an optional query image, a gallery of hits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmsearch.errors import MMSearchError

if TYPE_CHECKING:
    import gradio as gr

    from mmsearch import Hit, SearchEngine


def _label(hit: Hit) -> str:
    scores = " · ".join(f"{name} {'n/a' if v is None else f'{v:.3f}'}" for name, v in hit.scores.items())
    caption = f" — {hit.caption}" if hit.caption else ""
    return f"{hit.score:.3f} ({scores}){caption}"


def run_search(engine: SearchEngine, query: str, image: str | None, k: float) -> tuple[list[tuple[str, str]], str]:
    """Search and format for the page: gallery items and a status line (errors become the status)."""
    if not (query or "").strip() and not image:
        return [], "Type a query (any language) or add an image."
    try:
        hits = engine.search(query or None, image=image or None, k=int(k))
    except MMSearchError as exc:
        return [], f"⚠️ {exc}"
    status = f"{len(hits)} results" if hits else "No results."
    return [(hit.path, _label(hit)) for hit in hits], status


def build_demo(engine: SearchEngine, title: str = "mmsearch") -> gr.Blocks:
    """The Blocks app. Named API endpoint: ``/search`` (query, image, k) -> (gallery, status)."""
    import gradio as gr

    from mmsearch.demo import profile_label

    stats = engine.stats()
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n{profile_label(engine)} · {stats['images']} images indexed")
        with gr.Row():
            query = gr.Textbox(label="Query (any language)", placeholder="a red bicycle · 一只猫 · ein Hund am Strand", scale=4)
            k = gr.Slider(1, 50, value=12, step=1, label="Results", scale=1)
        image = gr.Image(label="Query image (optional)", type="filepath", height=160)
        button = gr.Button("Search", variant="primary")
        status = gr.Markdown()
        gallery = gr.Gallery(label="Hits", columns=4, height="auto", object_fit="contain")

        def search(q: str, img: str | None, n: float) -> tuple[list[tuple[str, str]], str]:
            return run_search(engine, q, img, n)

        inputs: list[Any] = [query, image, k]
        button.click(search, inputs, [gallery, status], api_name="search")
        query.submit(search, inputs, [gallery, status], api_name=False)
    return demo


def launch(engine: SearchEngine, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
    """Serve the page; only files inside the indexed folders can be fetched by the browser."""
    engine.lock_for_writing()  # the page's process owns the database while it serves
    demo = build_demo(engine)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, allowed_paths=engine.stats()["roots"], **kwargs)
