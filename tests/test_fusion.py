"""The ranking rules (mmsearch.search.fusion): normalisation, missing signals, pinned file names, fairness."""

from __future__ import annotations

import pytest

from mmsearch.search.fusion import RULES, fuse, pool_size, query_weights

WEIGHTS = {"image": 0.5, "caption": 0.5}
# "both" is strong on both signals; "lucky" has no caption and the single best image score.
POOL = {"both": {"image": 0.30, "caption": 0.90}, "lucky": {"image": 0.31, "caption": None},
        "weak": {"image": 0.20, "caption": 0.40}, "middle": {"image": 0.25, "caption": 0.65}}


def test_min_max_normalisation_per_signal_and_constant_signals_count_as_one():
    fused = fuse({"a": {"image": 0.2, "caption": 0.9}, "b": {"image": 0.3, "caption": 0.9}}, WEIGHTS)
    assert fused == pytest.approx({"a": 0.5, "b": 1.0})  # image 0 / 1, caption constant -> 1 for both


def test_the_rules_fill_a_missing_signal_as_documented():
    # normalised image: both 0.909, lucky 1, weak 0, middle 0.455; caption: both 1, weak 0, middle 0.5
    assert fuse(POOL, WEIGHTS, "skip")["lucky"] == pytest.approx(1.0)
    assert fuse(POOL, WEIGHTS, "low")["lucky"] == pytest.approx(0.5)
    assert fuse(POOL, WEIGHTS, "mean")["lucky"] == pytest.approx((1.0 + 0.5) / 2)
    assert fuse(POOL, WEIGHTS, "shrink")["lucky"] == pytest.approx((1.0 + (1.0 + 0.5) / 2) / 2)
    rrf = fuse(POOL, WEIGHTS, "rrf")
    assert max(rrf.values()) == pytest.approx(1.0) and rrf["both"] == 1.0  # 1st + 2nd beats 1st + last
    with pytest.raises(ValueError, match="unknown fusion rule"):
        fuse(POOL, WEIGHTS, "magic")


def test_only_skip_lets_a_photo_win_for_lacking_a_signal():
    for rule in RULES:
        fused = fuse(POOL, WEIGHTS, rule)
        best = max(fused, key=fused.get)
        assert (best == "lucky") == (rule == "skip"), rule
    shrink = fuse(POOL, WEIGHTS, "shrink")
    assert shrink["lucky"] > shrink["middle"] > shrink["weak"]  # one strong signal still ranks high


def test_weights_and_pool():
    assert query_weights(0.5, 0.25, text=True) == {"image": 0.5, "caption": 0.5, "keyword": 0.25, "feedback": 0.0}
    assert query_weights(0.5, 0.25, text=True, feedback_weight=0.5)["feedback"] == 0.5
    assert query_weights(0.5, 0.25, text=False) == {"image": 1.0}
    assert pool_size(1) == 30 and pool_size(20) == 60


def test_text_in_photos_is_added_and_never_dilutes_the_other_signals():
    found = {"a": {"image": 0.30, "keyword": 2.0, "ocr": None}, "b": {"image": 0.35, "keyword": 0.0, "ocr": None},
             "c": {"image": 0.10, "keyword": 0.0, "ocr": 0.2}, "t": {"image": 0.05, "keyword": 0.0, "ocr": 1.0}}
    weights = {"image": 0.5, "keyword": 0.25}
    base = fuse({i: {s: v for s, v in scores.items() if s != "ocr"} for i, scores in found.items()}, weights)
    with_text = fuse(found, {**weights, "ocr": 1.5})
    # Photos without text keep their order and their ratios: nothing was averaged in for them.
    assert with_text["a"] / with_text["b"] == pytest.approx(base["a"] / base["b"])
    # Every query word in the photo (1.0 x 1.5) beats the best photo without it, and the best scores 1.
    assert max(with_text, key=with_text.get) == "t" and max(with_text.values()) == pytest.approx(1.0)
    assert with_text["c"] / with_text["a"] > base["c"] / base["a"]  # a weak text match helps a little
    assert fuse(found, {**weights, "ocr": 0.0}) == base
