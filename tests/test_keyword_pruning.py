"""A keyword search that scores only the documents that can rank (``KeywordIndex.candidates``, MaxScore) gives
what scoring every document gives: the same ids, in the same order (ties in id order), with the same scores."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mmsearch.search.keywords import KeywordIndex
from mmsearch.search.topk import top

RARE = [f"rare{k}" for k in range(120)]


def _text(rng: random.Random, n: int) -> str:
    """Words as a library has them: one in nearly every text, one in a third, rare ones in a few, repeated
    words and lengths that vary; every 25th text the same few words, so many documents tie."""
    if n % 25 == 0:
        return "common rare3 rare4"
    words = ["common"] * (rng.random() < 0.9) * rng.choice([1, 1, 1, 2, 4]) + ["middle"] * (rng.random() < 0.3)
    words += rng.sample(RARE, rng.choice([0, 1, 1, 2])) + [f"filler{rng.randrange(5000)}" for _ in range(rng.randrange(6))]
    return " ".join(rng.sample(words, len(words)))


def _index(seed: int, removed: float) -> KeywordIndex:
    rng = random.Random(seed)
    docs = [(f"{rng.getrandbits(64):016x}", _text(rng, n)) for n in range(4000)]
    index = KeywordIndex.build(docs)
    gone = [i for i, _ in docs if rng.random() < removed]
    return index.apply([], removed=gone) if gone else index


def _queries(rng: random.Random) -> list[str]:
    fixed = ["common rare7", "common middle rare9", "rare3 rare4", "common rare3 rare4", "middle", "common",
             "rare11", "common middle", "filler17 common", "nothing here", "common rare1 rare2 rare5 middle"]
    mixed = [" ".join(rng.sample(["common", "middle", *rng.sample(RARE, 3), "filler3"], rng.randint(2, 4)))
             for _ in range(40)]
    return fixed + mixed


@pytest.mark.parametrize(("seed", "removed"), [(0, 0.0), (1, 0.05), (2, 0.0)])
def test_scoring_only_the_documents_that_can_rank_gives_what_scoring_every_one_gives(seed, removed):
    index = _index(seed, removed)
    rng = random.Random(seed)
    skipped = 0
    for query in _queries(rng):
        every = index.score_array(query, phrase=False)
        for n in (1, 5, 20, 200):
            want = top(index.ids, every, n, index.id_keys)
            got = index.search(query, n)
            assert list(got.items()) == list(want.items()), (query, n)
            found = index.candidates(query, n)
            if found is not None:
                rows, scores = found
                assert np.array_equal(scores, every[rows])  # bit for bit
                skipped += len(rows) < np.count_nonzero(every)
        some = rng.sample(list(index.positions()), 300)
        positions = index.positions()
        assert index.scores_of(query, some) == {i: float(every[positions[i]]) for i in some if every[positions[i]] > 0}
    assert skipped >= 20  # the searches above did leave documents unscored


def test_a_common_word_beside_a_rare_one_scores_only_the_rare_ones_documents():
    index = _index(3, 0.0)
    every = index.score_array("common middle rare9", phrase=False)
    rows, _ = index.candidates("common middle rare9", 5)
    assert np.count_nonzero(every) > 3000 and len(rows) == len(index.postings["rare9"][0]) < 100
    # a word alone in most texts: every document is scored
    assert index.candidates("common", 5) is None
