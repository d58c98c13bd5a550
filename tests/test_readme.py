"""The README's library snippet runs as written (with the tiny test models named by environment variables)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import save_image

ROOT = Path(__file__).resolve().parent.parent


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"## Library\n\n```python\n(.*?)```", text, re.S).group(1)


def test_readme_library_snippet_runs(tmp_path, monkeypatch, tiny_clip, minilm, capsys):
    shutil.copytree(ROOT / "sample_images", tmp_path / "sample_images")
    save_image(tmp_path / "query.jpg", (200, 120, 40))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMSEARCH_CLIP_MODEL", tiny_clip[0])
    monkeypatch.setenv("MMSEARCH_CLIP_PRETRAINED", tiny_clip[1])
    monkeypatch.setenv("MMSEARCH_TEXT_MODEL", minilm)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    report, hits = namespace["report"], namespace["hits"]
    assert report.added == 18 and report.failed == []
    assert "added 18, updated 0, unchanged 0, moved 0, removed 0, skipped 0" in capsys.readouterr().out
    assert hits == []  # the last query filters on a folder the samples do not have
    assert (tmp_path / "mmsearch-db").is_dir()


@pytest.mark.slow
@pytest.mark.server
def test_readme_gradio_client_snippet_runs(tmp_path, monkeypatch, tiny_config, tiny_encoders, capsys):
    from helpers import free_port
    from mmsearch_web.app import launch

    from mmsearch import SearchEngine

    shutil.copytree(ROOT / "sample_images", tmp_path / "sample_images")
    monkeypatch.chdir(tmp_path)
    engine = SearchEngine(tmp_path / "db", config=tiny_config, encoders=tiny_encoders)
    engine.index(["sample_images"], captions="sample_images/captions.csv")
    port = free_port()
    demo = launch(engine, port=port, prevent_thread_lock=True, quiet=True)
    try:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        snippet = re.search(r"### API \(gradio_client\)\n.*?```python\n(.*?)```", text, re.S).group(1)
        namespace: dict = {}
        exec(compile(snippet.replace(":7860/", f":{port}/"), "README.md", "exec"), namespace)
    finally:
        demo.close()
    out = capsys.readouterr().out
    assert "18 images indexed" in out and out.count(str(tmp_path / "sample_images")) >= 1
    first = Path(namespace["hits"][0]["file"]).name
    assert len(namespace["similar"]) == 5 and namespace["status"] == f"5 results like {first}"
