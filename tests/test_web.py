"""The basic web page: a real Gradio server on 127.0.0.1, queried through gradio_client."""

from __future__ import annotations

import socket

import pytest

from web.app import build_demo, run_search


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def indexed(make_engine, photos):
    engine = make_engine(caption_weight=1.0)
    engine.index([photos], captions=photos / "captions.csv")
    return engine


def test_run_search_formats_hits_and_reports_errors(indexed, photos):
    items, status = run_search(indexed, "a kitten napping on the couch", None, 3)
    assert status == "3 results" and len(items) == 3
    path, label = items[0]
    assert path.endswith("black_cat.jpg") and "caption" in label and "a black cat sleeping on a sofa" in label
    assert run_search(indexed, "", None, 3) == ([], "Type a query (any language) or add an image.")
    items, status = run_search(indexed, "", str(photos / "missing.jpg"), 3)
    assert items == [] and status.startswith("⚠️ cannot read")


def test_server_answers_text_and_image_queries_through_gradio_client(indexed, photos):
    from gradio_client import Client, handle_file

    demo = build_demo(indexed)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        allowed_paths=[str(photos)], quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        gallery, status = client.predict("ocean shore in the evening", None, 2, api_name="/search")
        assert status == "2 results" and len(gallery) == 2
        assert gallery[0]["caption"].endswith("waves rolling onto a sandy beach at sunset")
        gallery, _ = client.predict("", handle_file(str(photos / "red_bicycle.png")), 1, api_name="/search")
        assert len(gallery) == 1 and "a red bicycle leaning against a brick wall" in gallery[0]["caption"]
    finally:
        demo.close()
