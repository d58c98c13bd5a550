"""Signals are modules behind one protocol: a signal registered from this file alone is found, scored,
fused and shown in ``Hit.scores``, and ``mmsearch eval`` measures it with the same object."""

from __future__ import annotations

import pytest
from helpers import index_photos

from mmsearch.evaluation import evaluate, load_dataset
from mmsearch.ids import image_id
from mmsearch.search import signals
from mmsearch.search.fusion import query_weights
from mmsearch.search.signals import Signal, Weighing


class Favourite(Signal):
    """A toy signal: one chosen photo scores 1, every other candidate 0."""

    name = "favourite"

    def __init__(self, image: str):
        self.image = image

    def weight(self, weighing: Weighing) -> float | None:
        return 3.0 if weighing.text else None

    def find(self, context):
        return {self.image}

    def score(self, context, ids):
        return {i: 1.0 if i == self.image else 0.0 for i in ids}


@pytest.fixture
def favourite(photos):
    signal = signals.register(Favourite(image_id(str(photos / "pasta.jpg"))))
    yield signal
    signals.unregister(signal.name)


def test_the_built_in_signals_are_registered_in_the_order_of_hit_scores():
    assert [s.name for s in signals.registered()] == ["image", "caption", "keyword", "sparse", "ocr", "feedback"]
    assert signals.additive() == {"ocr"}
    assert query_weights(0.5, 0.25, text=True, ocr_weight=1.5) == {"image": 0.5, "caption": 0.5, "keyword": 0.25,
                                                                    "ocr": 1.5, "feedback": 0.0}


def test_a_signal_registered_by_a_test_is_ranked_and_shown(make_engine, photos, favourite):
    engine = make_engine()
    index_photos(engine, photos)
    assert query_weights(0.5, 0.25, text=True)["favourite"] == 3.0
    hits = engine.search("a red bicycle leaning against a brick wall", k=6)
    assert hits[0].path.endswith("pasta.jpg") and hits[0].scores["favourite"] == 1.0
    assert {h.scores["favourite"] for h in hits[1:]} == {0.0}
    assert "favourite" not in engine.search_image(photos / "black_cat.jpg", k=3)[0].scores  # no weight: not scored
    signals.unregister("favourite")
    hits = engine.search("a red bicycle leaning against a brick wall", k=6)
    assert hits[0].path.endswith("red_bicycle.png") and "favourite" not in hits[0].scores


def test_eval_measures_a_registered_signal_with_the_same_object(make_engine, photos, favourite, tmp_path):
    (tmp_path / "eval.csv").write_text("path,caption\npasta.jpg,a plate of spaghetti\nblack_cat.jpg,a black cat\n"
                                       "red_bicycle.png,a red bicycle\n")
    result = evaluate(make_engine(), load_dataset(tmp_path / "eval.csv", photos), image_captions=photos / "captions.csv")
    # Exact row: the favourite is first for every query, so only the query whose answer it is finds it first.
    assert result["signals"]["favourite"]["text_to_image"]["R@1"] == pytest.approx(33.33)
    assert result["rows"]["favourite"] == "exact"
    assert result["signals"]["fused"]["text_to_image"]["R@1"] == pytest.approx(33.33)  # it outweighs the rest
