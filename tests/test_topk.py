"""The best few of a score array, ties in id order: narrowing a million ties by their id keys in numpy gives
exactly what sorting every tied id gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mmsearch.packed import prefix_keys
from mmsearch.search.topk import FEW_TIES, top


def _reference(ids: list[str], scores: np.ndarray, n: int) -> dict[str, float]:
    matched = [d for d in range(len(ids)) if scores[d]]
    best = sorted(matched, key=lambda d: (-scores[d], ids[d]))[:n]
    return {ids[d]: float(scores[d]) for d in best}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", ["hex", "shared prefix", "short and long", "unicode"])
def test_ties_are_broken_by_id_exactly_as_sorting_every_id(seed, shape):
    rng = random.Random(seed)
    size = FEW_TIES * 3
    if shape == "hex":
        ids = [f"{rng.getrandbits(96):024x}" for _ in range(size)]
    elif shape == "shared prefix":  # the keys (first 8 bytes) tie too: the ids themselves decide
        ids = [f"IMG_0000{rng.randrange(40):02d}_{k:06d}" for k in range(size)]
    elif shape == "short and long":
        ids = [rng.choice(["a", "ab", "abc", "abcdefgh", "abcdefghi", "b"]) + str(k) * rng.randint(0, 2) for k in range(size)]
        ids = list(dict.fromkeys(ids)) + [f"z{k}" for k in range(size - len(set(ids)))]
    else:
        ids = [rng.choice(["猫", "東京", "é", "e"]) + f"{k:05d}" for k in range(size)]
    few = np.asarray([rng.choice([0.0, 1.0, 2.0, 2.0, 2.0, 3.5]) for _ in ids], dtype=np.float32)
    many = np.asarray([rng.choice([0.0, rng.random(), 0.5]) for _ in ids], dtype=np.float32)  # past the peels
    keys = prefix_keys(ids)
    for scores in (few, many):
        for n in (1, 10, 200, size):
            want = _reference(ids, scores, n)
            assert list(top(ids, scores, n, keys)) == list(want) and top(ids, scores, n, keys) == want
            assert top(ids, scores, n) == want


def test_prefix_keys_sort_as_the_strings_do():
    words = ["", "a", "a\u00e9", "ab", "abcdefgh", "abcdefgz", "b", "猫", "東京", "zzzzzzzzzz"]
    keys = prefix_keys(words)
    assert keys.dtype == np.uint64 and len(keys) == len(words)
    assert [words[i] for i in np.argsort(keys, kind="stable")] == sorted(words)
