"""Pairs of 64-bit perceptual hashes within a Hamming distance, for near-duplicates at a library's scale.

Comparing every hash with every other costs n²: 4 minutes at 200k photos, over an hour and a half at a
million. Multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012) finds the same pairs by lookup: the
64 bits are cut into ``len(SPLIT)`` chunks, and two hashes at most ``d`` bits apart differ in at most
``d // len(SPLIT)`` bits of one chunk at least (pigeonhole). So every hash looks up, per chunk, each value
that few bits away from its own in a table of the chunk's values, and only those candidates are compared
in full. Random 64-bit hashes fill a 21-bit table at half a hash per slot, so a million hashes make about a
hundred million comparisons instead of half a trillion (``benchmarks/duplicates_bench.py`` measures both).
Beyond ``MAX_INDEXED_BITS`` (where the probes of a chunk outgrow the saving) and for small inputs, every
pair is compared, blockwise. Both give exactly the same pairs (tests/test_duplicates.py).
"""

from __future__ import annotations

import itertools

import numpy as np

SPLIT = ((0, 22), (22, 21), (43, 21))  # (first bit, width) of each chunk
MAX_INDEXED_BITS = 8  # 2 bits per chunk: 254 probes of each; at 11 bits (3 per chunk) 1,794
BRUTE_LIMIT = 50_000_000  # hash comparisons below which every pair is compared (a few tens of ms)
BLOCK = 64  # hashes compared at once against all others in the blockwise comparison (64 x 100k uint64 = 51 MB)
PIECE = 4_000_000  # candidate pairs compared at once in the indexed lookup (bounds memory on clustered hashes)
# A candidate costs about 3 comparisons of the blockwise pass (gathers, repeats, the sort at the end):
# measured at 100k, 20 ns against 6.4 ns. Lookup is taken while 3 x its candidates are fewer than the
# comparisons of every pair (crowded hashes: 330M candidates took 10.8 s, every pair 64 s).
LOOKUP_COST = 3
SAMPLE = 2000  # hashes whose lookups estimate the candidates

Pairs = dict[int, dict[int, int]]  # position -> {position: bits}, both ways


def pairs_within(hashes: np.ndarray, has: np.ndarray, max_bits: int, rows: list[int] | None = None) -> Pairs:
    """Every pair of positions whose hashes are at most ``max_bits`` apart, both ways: n -> {m: bits}.

    Args:
        hashes: uint64 hashes.
        has: which positions have a hash (the others pair with nothing).
        max_bits: the largest distance of a pair.
        rows: only the pairs that involve these positions (photos just added), or None for all.
    """
    queries = len(hashes) if rows is None else len(rows)
    if max_bits > MAX_INDEXED_BITS or queries * len(hashes) <= BRUTE_LIMIT:
        return every_pair(hashes, has, max_bits, rows)
    if candidates(hashes, has, max_bits, rows) * LOOKUP_COST > queries * len(hashes):
        return every_pair(hashes, has, max_bits, rows)  # hashes crowded into a few slots: lookup saves nothing
    return indexed_pairs(hashes, has, max_bits, rows)


def candidates(hashes: np.ndarray, has: np.ndarray, max_bits: int, rows: list[int] | None = None) -> float:
    """About how many comparisons ``indexed_pairs`` would make: its lookups for a sample of ``SAMPLE``
    of the hashes that ask, scaled up (crowded slots show in any sample; 2 % of the lookup's time)."""
    total = 0.0
    for values, _, queries, counts, width in _tables(hashes, has, rows):
        asked = values[np.random.default_rng(0).choice(queries, SAMPLE, replace=False)] if len(queries) > SAMPLE \
            else values[queries]
        found = sum(int(counts[asked ^ flip].sum()) for flip in _flips(width, max_bits // len(SPLIT)))
        total += found * len(queries) / max(len(asked), 1)
    return total


def every_pair(hashes: np.ndarray, has: np.ndarray, max_bits: int, rows: list[int] | None = None) -> Pairs:
    """``pairs_within`` by comparing each hash (or each of ``rows``) with every other, blockwise."""
    order = np.arange(len(hashes)) if rows is None else np.asarray(rows, dtype=np.int64)
    pairs: Pairs = {}
    for start in range(0, len(order), BLOCK):
        block = order[start:start + BLOCK]
        bits = np.bitwise_count(hashes[block][:, None] ^ hashes[None, :])
        found_rows, cols = np.nonzero((bits <= max_bits) & has[block][:, None] & has[None, :])
        for r, c in zip(found_rows.tolist(), cols.tolist()):
            a = int(block[r])
            if a != c:
                pairs.setdefault(a, {})[c] = pairs.setdefault(c, {})[a] = int(bits[r, c])
    return pairs


def indexed_pairs(hashes: np.ndarray, has: np.ndarray, max_bits: int, rows: list[int] | None = None) -> Pairs:
    """``pairs_within`` by multi-index hashing (see the module); ``max_bits`` at most ``MAX_INDEXED_BITS``."""
    if max_bits > MAX_INDEXED_BITS:
        raise ValueError(f"indexed_pairs finds pairs up to {MAX_INDEXED_BITS} bits apart, not {max_bits}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    found_a, found_b = [], []
    for values, present, queries, counts, width in _tables(hashes, has, rows):
        members = present[np.argsort(values[present], kind="stable")]  # the chunk's table, as one sorted array
        starts = np.concatenate([[0], np.cumsum(counts)])
        asked = values[queries]
        for flip in _flips(width, max_bits // len(SPLIT)):
            probe = asked ^ flip
            a, b = _candidates(queries, counts[probe], starts[probe], members)
            near = np.bitwise_count(hashes[a] ^ hashes[b]) <= max_bits
            found_a.append(a[near])
            found_b.append(b[near])
    return _both_ways(hashes, np.concatenate(found_a), np.concatenate(found_b))


def _tables(hashes: np.ndarray, has: np.ndarray, rows: list[int] | None):
    """Per chunk: every hash's value of it, the positions with a hash, the positions that ask, how many
    hashes hold each value, and the chunk's width."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    present = np.flatnonzero(has)
    queries = present if rows is None else np.asarray([r for r in rows if has[r]], dtype=np.int64)
    for first, width in SPLIT:
        values = ((hashes >> np.uint64(first)) & np.uint64((1 << width) - 1)).astype(np.int64)
        yield values, present, queries, np.bincount(values[present], minlength=1 << width), width


def _flips(width: int, most: int) -> list[int]:
    """Every mask of at most ``most`` bits within a chunk of ``width`` bits (0 first)."""
    return [sum(1 << bit for bit in bits) for k in range(most + 1) for bits in itertools.combinations(range(width), k)]


def _candidates(queries: np.ndarray, counts: np.ndarray, starts: np.ndarray, members: np.ndarray):
    """(query, member) for every member of each query's probed slot, in pieces of at most ``PIECE``."""
    pieces_a, pieces_b = [], []
    ends = np.cumsum(counts)
    start = 0
    while start < len(queries):
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + PIECE, side="right")))
        n = counts[start:stop]
        total = int(n.sum())
        if total:
            offsets = np.repeat(starts[start:stop] - (np.cumsum(n) - n), n) + np.arange(total)
            pieces_a.append(np.repeat(queries[start:stop], n))
            pieces_b.append(members[offsets])
        start = stop
    empty = np.zeros(0, np.int64)
    return (np.concatenate(pieces_a) if pieces_a else empty), (np.concatenate(pieces_b) if pieces_b else empty)


def _both_ways(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> Pairs:
    """The pairs found (each maybe more than once, by several chunks or from both ends), as ``Pairs``."""
    keep = a != b
    if not keep.any():
        return {}
    low, high = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    unique = np.unique(low * len(hashes) + high)
    low, high = unique // len(hashes), unique % len(hashes)
    bits = np.bitwise_count(hashes[low] ^ hashes[high])
    pairs: Pairs = {}
    for x, y, d in zip(low.tolist(), high.tolist(), bits.tolist()):
        pairs.setdefault(x, {})[y] = pairs.setdefault(y, {})[x] = int(d)
    return pairs
