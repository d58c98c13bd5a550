"""The demo falls back to the labelled offline profile when the default weights cannot be fetched."""

from __future__ import annotations

from pathlib import Path

from mmsearch import Config
from mmsearch.demo import demo_engine, run_demo
from mmsearch.present import profile_label

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def test_demo_falls_back_to_offline_profile_and_finds_the_cat(tmp_path, capsys):
    config = Config(db=str(tmp_path / "demo-db"))  # default models; the hub is off in tests
    engine = demo_engine(config)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ViT-B-32" in err[0] and "OFFLINE PROFILE" in err[0]
    assert engine.config.db == str(tmp_path / "demo-db") + "-offline"
    assert profile_label(engine.signature).startswith("Offline profile: captions, file names and text in photos only")

    assert run_demo(config, str(SAMPLES), serve=False) == 0
    out = capsys.readouterr().out
    assert "indexed" in out and "added 18" in out and "skipped 0" in out
    hits = engine.search("a cat looking at the camera", k=3)
    assert hits[0].path.endswith("chelsea-cat.png") and hits[0].scores["image"] is None
    rocket = engine.search("a rocket launch", k=1)[0]
    assert rocket.path.endswith("rocket.jpg") and "Falcon 9" in rocket.caption  # from the sidecar file
