"""Text in photos: the engines read rendered signs (English, German, Chinese; rotated, compressed, on busy
backgrounds), the text is searched by word, phrase, substring, number, Chinese word and meaning, and
OCR is opt-in, recorded, incremental and never stops a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import edit_distance as distance
from helpers import render_text_photo, save_image

from mmsearch import Config, ConfigError
from mmsearch.cli import main
from mmsearch.media.ocr import load_ocr
from mmsearch.search.ocr_matcher import OcrMatcher, query_terms

SIGNS = {  # file -> (lines, rendering)
    "gate.jpg": (["GATE B42 BOARDING"], {"busy": True, "angle": 2}),
    "room.jpg": (["HOTEL ROOM 1208"], {"quality": 55}),
    "exit.jpg": (["EXIT"], {"angle": -3}),
    "shop.jpg": (["营业时间9:00-21:00", "北京欢迎你"], {"busy": True}),
    "bakery.jpg": (["Bäckerei Müller"], {"angle": 1, "quality": 70}),
    "menu.jpg": (["Fresh coffee and cake"], {"busy": True, "angle": -1}),
}


@pytest.fixture(scope="module")
def signs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("signs")
    for n, (name, (lines, how)) in enumerate(SIGNS.items()):
        render_text_photo(root / name, lines, seed=n, **how)
    for n in range(4):  # photos without text
        save_image(root / f"plain{n}.jpg", (40 * n, 120, 200 - 30 * n), size=(400, 300))
    return root


@pytest.fixture(scope="module")
def rapidocr():
    return load_ocr("rapidocr")


def _cer(engine, path: Path, truth: str) -> float:
    from PIL import Image

    found = engine.read(Image.open(path).convert("RGB"))
    got = "".join((found.text if found else "").split())
    want = truth.replace(" ", "")
    return distance(want, got) / len(want)


@pytest.mark.parametrize("name, limit", [("gate.jpg", 0.05), ("room.jpg", 0.1), ("exit.jpg", 0.0), ("shop.jpg", 0.05),
                                         ("bakery.jpg", 0.2), ("menu.jpg", 0.1)])
def test_rapidocr_reads_english_german_and_chinese_signs(rapidocr, signs, name, limit):
    # German umlauts come back as plain letters (the bundled PP-OCR model has none): CER 0.13 on "Bäckerei Müller".
    assert _cer(rapidocr, signs / name, "".join(SIGNS[name][0])) <= limit


def test_low_confidence_lines_are_dropped_and_cjk_gaps_closed():
    from mmsearch.media.ocr import MIN_CONFIDENCE, _lines

    text = _lines([("营业 时 间", 0.9), ("noise", MIN_CONFIDENCE - 0.01), ("EXIT 42", 0.8)])
    assert text is not None and text.lines == ("营业时间", "EXIT 42") and text.confidence == pytest.approx(0.85)
    assert _lines([("x", 0.1)]) is None


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")
def test_tesseract_reads_a_plain_sign_behind_the_same_interface(tmp_path):
    engine = load_ocr("tesseract")
    assert engine.signature.startswith("tesseract-") and "chi_sim+eng" in engine.signature
    path = render_text_photo(tmp_path / "plain.jpg", ["EMERGENCY EXIT 42"])
    assert _cer(engine, path, "EMERGENCY EXIT 42") <= 0.1


def test_an_unknown_engine_is_refused():
    with pytest.raises(ConfigError, match="ocr_engine must be one of"):
        Config(db="x", ocr_engine="paddle")


def test_the_matcher_finds_words_substrings_numbers_and_chinese():
    matcher = OcrMatcher({"gate": "GATE B42BOARDING", "room": "ROOM 1208", "shop": "营业时间9:00-21:00",
                          "office": "an office", "bakery": "Backerei Muller"})
    assert matcher.scores("B42") == {"gate": 1.0}  # inside a glued string
    assert matcher.scores("1208") == {"room": 1.0}
    assert matcher.scores("营业时间") == {"shop": 1.0}
    assert matcher.scores("boarding gate") == {"gate": 1.0}
    assert matcher.scores('"gate b42"') == {"gate": 1.0} and matcher.scores('"b42 gate"') == {}
    assert matcher.scores("of") == {}  # two letters match whole words only, not inside "office"
    assert matcher.scores("Bäckerei") == {"bakery": 1.0}  # accents folded on both sides
    assert matcher.scores("room 9999") == {"room": 0.5}
    assert query_terms("营业时间 B42") == ["b42", "营业时间"]


@pytest.fixture(scope="module")
def ocr_engine(signs, tiny_clip, minilm, tmp_path_factory):
    from mmsearch import SearchEngine

    # Random CLIP weights: the image signal is noise here, so it gets no weight (the signs have no captions).
    engine = SearchEngine(tmp_path_factory.mktemp("ocr") / "db", clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1],
                          text_model=minilm, ocr=True, caption_weight=1.0)
    report = engine.index([signs])
    assert (report.added, report.ocr_read, report.ocr_found, report.ocr_failed) == (10, 10, 6, [])
    return engine


@pytest.mark.parametrize("query, want", [
    ("coffee", "menu.jpg"),  # a word
    ("fresh coffee", "menu.jpg"),  # a phrase
    ("B42", "gate.jpg"),  # a code inside a longer string
    ("1208", "room.jpg"),  # a number
    ("营业时间", "shop.jpg"),  # a Chinese word
    ("北京", "shop.jpg"),
    ("Bäckerei", "bakery.jpg"),
    ("way out", "exit.jpg"),  # a paraphrase: found through the embedded text
])
def test_text_in_photos_is_found(ocr_engine, query, want):
    hit = ocr_engine.search(query, k=1)[0]
    assert Path(hit.path).name == want
    assert hit.scores["ocr"] > 0 and hit.metadata["ocr"]


def test_a_photo_without_text_gets_no_ocr_score(ocr_engine):
    hits = ocr_engine.search("B42", k=10)
    plain = [h for h in hits if h.path.endswith(("plain0.jpg", "plain1.jpg", "plain2.jpg", "plain3.jpg"))]
    assert plain and all(h.scores["ocr"] is None and "ocr" not in h.metadata or not h.metadata["ocr"] for h in plain)
    assert hits[0].scores["ocr"] == 1.0 and hits[0].score > max(h.score for h in plain)


def test_ocr_is_recorded_and_turning_it_on_later_reads_text_without_re_encoding(signs, tiny_clip, minilm, tmp_path,
                                                                                monkeypatch):
    from mmsearch import SearchEngine

    settings = {"clip_model": tiny_clip[0], "clip_pretrained": tiny_clip[1], "text_model": minilm}
    first = SearchEngine(tmp_path / "db", **settings)
    assert first.index([signs]).ocr_read == 0
    assert first.search("B42", k=1)[0].scores.get("ocr") is None  # no text read: no ocr signal

    engine = SearchEngine(tmp_path / "db", ocr=True, **settings)
    calls = []
    for method in ("encode_images", "encode_prepared"):
        monkeypatch.setattr(engine.encoders.image, method, lambda images: calls.append(images))
    report = engine.index([signs])
    assert (report.unchanged, report.added, report.ocr_read, report.ocr_found) == (10, 0, 10, 6)
    assert calls == []  # vectors are not re-encoded
    assert Path(engine.search("B42", k=1)[0].path).name == "gate.jpg"
    assert engine.store.ocr_setting().startswith("rapidocr")

    # A later run without the option keeps reading text: new photos get it, read ones are not read again.
    render_text_photo(signs.parent / "more" / "ticket.jpg", ["TICKET 7731"])
    later = SearchEngine(tmp_path / "db", **settings)
    report = later.index([signs, signs.parent / "more"])
    assert (report.added, report.ocr_read, report.ocr_found) == (1, 1, 1)
    assert Path(later.search("7731", k=1)[0].path).name == "ticket.jpg"
    off = SearchEngine(tmp_path / "db", ocr=False, **settings)
    assert off.index([signs, signs.parent / "more"]).ocr_read == 0 and off.store.ocr_setting() == ""
    assert Path(off.search("7731", k=1)[0].path).name == "ticket.jpg"  # text already read stays searchable


def test_an_ocr_failure_keeps_the_photo_indexed_and_is_counted(signs, tiny_clip, minilm, tmp_path, monkeypatch):
    import threading

    from mmsearch import SearchEngine
    from mmsearch.media.ocr import RapidOcr

    read, failed, lock = RapidOcr.read, [], threading.Lock()

    def flaky(self, image):
        with lock:
            first = not failed
            failed.append(True)
        if first:  # one photo, whichever worker reads first
            raise RuntimeError("onnxruntime: bad allocation")
        return read(self, image)

    monkeypatch.setattr(RapidOcr, "read", flaky)
    engine = SearchEngine(tmp_path / "db", clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model=minilm,
                          ocr=True)
    report = engine.index([signs])
    assert report.added == 10 and report.failed == []
    assert len(report.ocr_failed) == 1 and "bad allocation" in report.ocr_failed[0][1]
    assert "1 failed" in report.summary()
    again = engine.index([signs])  # the next run reads that photo's text again
    assert (again.unchanged, again.ocr_read, again.ocr_failed) == (10, 1, [])


def test_the_command_line_reads_text_and_shows_it(signs, tiny_env, capsys):
    assert main(["index", str(signs), "--ocr", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ocr_found"] == 6 and report["ocr_failed"] == []
    assert main(["search", "B42", "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert hit["path"].endswith("gate.jpg") and "B42" in hit["metadata"]["ocr"] and hit["scores"]["ocr"] == 1.0
    assert main(["search", "B42", "-k", "1"]) == 0
    assert "text in photo: GATE B42" in capsys.readouterr().out


def test_a_missing_engine_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_rapidocr(name, *args, **kwargs):
        if name.startswith("rapidocr_onnxruntime"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rapidocr)
    with pytest.raises(ConfigError, match=r"pip install 'mmsearch\[ocr\]'"):
        load_ocr("rapidocr")


def test_eval_reports_the_ocr_signal(signs, tiny_clip, minilm, tmp_path):
    from mmsearch import SearchEngine
    from mmsearch.evaluation import evaluate, load_dataset

    rows = ["path,caption", "gate.jpg,the sign for gate B42", "room.jpg,door of room 1208", "shop.jpg,营业时间",
            "exit.jpg,the way out", "menu.jpg,fresh coffee", "plain0.jpg,a plain photo"]
    (tmp_path / "eval.csv").write_text("\n".join(rows) + "\n")
    engine = SearchEngine(tmp_path / "db", clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model=minilm,
                          ocr=True)
    result = evaluate(engine, load_dataset(tmp_path / "eval.csv", signs))
    assert result["rows"]["ocr"] == "exact"
    assert result["signals"]["ocr"]["text_to_image"]["R@1"] >= 80  # 5 of the 6 queries are about text in photos
    assert result["signals"]["fused"]["text_to_image"]["R@1"] >= 66


def test_text_from_a_photo_is_shown_as_text_in_the_details_never_as_markup():
    from mmsearch_web.views import hit_details

    hit = {"file": "/p/sign.jpg", "id": "x", "score": 1.0, "caption": "", "scores": {"ocr": 1.0},
           "metadata": {"ocr": "[win a prize](http://evil.example)\n<img src=x onerror=alert(1)>", "ocr_confidence": 0.9}}
    shown = hit_details(hit)
    assert "Text in photo" in shown and "(confidence 0.90)" in shown
    assert '<div class="ocr-text">[win a prize](http://evil.example)<br>&lt;img src=x onerror=alert(1)&gt;</div>' in shown
    assert "<img" not in shown
