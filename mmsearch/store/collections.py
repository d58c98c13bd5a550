"""The collections of an index on Chroma: their names per generation, their HNSW settings, and the raw
reads that both the store and the schema steps make (``client`` and ``migrations`` import this; it
imports neither)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..ids import split_caption_id

IMAGES, CAPTIONS, FEEDBACK, OCR = "mmsearch_images", "mmsearch_captions", "mmsearch_feedback", "mmsearch_ocr"
FRAMES = "mmsearch_frames"  # the sampled frames of videos (one record per frame), in the image space
ALBUMS = "mmsearch_albums"  # smart albums: saved searches (mmsearch.albums)
REMOVED = "mmsearch_removed"  # one record per removed image: its id and the write that removed it (``SEQ``)
WRITES = "mmsearch_writes"  # one record per write of image records in progress: its number (``SEQ``) and ``AT``
KINDS = {"images": IMAGES, "captions": CAPTIONS, "ocr": OCR, "feedback": FEEDBACK, "frames": FRAMES, "albums": ALBUMS,
         "removed": REMOVED, "writes": WRITES}
POINTER = "mmsearch_index"  # metadata: the active generation, the previous one, the one being built
FIRST = "first"  # the first generation of an index: the plain collection names
# Measured on 20k embedding-like 512-d vectors (tests/test_recall.py), recall@10 against exact search:
# Chroma's defaults (ef_search 100, ef_construction 100, max_neighbors 16) 0.87; max_neighbors 32 gave
# 0.977-0.985 from run to run (parallel HNSW builds differ), too close to our 0.98 floor; max_neighbors 48
# gives 0.993 for ~15% more build time and the same ~3.5 ms per query.
# At 100k vectors (benchmarks/store_bench.py, same data shape), ef_search 128 gave 0.975, 192 0.993 and 256
# 0.997 for 7.9, 9.9 and 11.1 ms per query: images search with 256. Captions only nominate candidates
# (each image is then scored exactly), so they keep the cheaper 128.
# sync_threshold: Chroma writes the HNSW index to disk every N records and every new process replays the
# records written since (up to N - 1) into it. Its default 1000 cost 0.45-0.55 s of every command's cold
# start on a 5k index; 200 costs 0.07 s, with the same indexing time (17.1 s vs 17.6 s for 5k images,
# benchmarks/cold_start_bench.py).
HNSW = {"space": "cosine", "ef_search": 256, "ef_construction": 200, "max_neighbors": 48, "sync_threshold": 200}
# At a fixed ef_search recall falls as the library grows: with 256, 0.997 at 100k, 0.993 at 200k, 0.980 at
# 400k, 0.971 at 474k and 0.954 at 653k. At 400k (benchmarks/recall_bench.py, each value in a fresh process,
# 200 queries) 384 gave 0.992 and 512 0.9985, for 12.5 and 15.7 ms per query against 9.1 (a text query end
# to end: p50 60.3 and 64.6 ms against 57.3). So the images' ef_search grows with the library: up to this
# many images, this value (``images_ef``); an index run sets it at its end (``Store.fit_search``).
EF_BY_SIZE = ((250_000, 256), (500_000, 384), (1_000_000, 512))
EF_LARGEST = 768  # above a million: 768 gave 1.000 at 400k
HNSW_CAPTIONS = {**HNSW, "ef_search": 128}
FILTER_FIELDS = ("path", "folders", "date", "camera", "place_keys", "lat", "lon")  # copied where a ``where`` looks
PAGE = 5000  # records per get() page; below Chroma's max batch size (~5,400)
# A page of ids only. Each get(offset=k) costs its offset, so a full listing grows faster than the library
# (8.1 s at 500k with PAGE); pages of 30,000 ids took 0.46x the time of PAGE's at 100k
# (benchmarks/paging_bench.py). Chroma reads a page with one SQL variable per id: above SQLite's 32,766 a
# get fails ("too many SQL variables"), so a page stays below it.
ID_PAGE = 30_000
# A vector query under a filter that keeps at most EXACT_MAX records, and at most one in EXACT_SHARE of the
# collection, scores them exactly from their vectors read by id (``Store._query``). Chroma's graph search under
# such a filter walks most of the graph: at a million, 25 kept took 8.9 s, 1,000 5.6 s, 20,000 0.45 s; reading
# vectors by id costs about 70 us each (9,000 in 0.56 s), so exact wins up to about 10,000.
EXACT_MAX = 10_000
EXACT_SHARE = 20
# Every write of image records is numbered: its records carry its number (``SEQ``) and, once it is done, the
# images collection's metadata publishes it (``WRITE_SEQ``), so a reader asks for what changed since the last
# number it saw (``Store.written_since``) instead of reading every record (the keyword index at a million).
# A removal leaves a record in ``REMOVED`` (``Store.removed_since``): listing every id costs 8 s at 200k.
# Writers into a server run at once (shards), and a number is read before it is taken: two writes can take
# one number, or a slow write an older one. So a write claims its number in ``WRITES`` before it writes,
# publishes its ``WRITE_TOKEN`` with the number, and drops its claim once done; a reader asks next from the
# oldest claim it saw (``WriteMark.through``) and reads again when the token changes. A claim older than
# ``CLAIM_LEASE`` seconds is a killed writer's: it is ignored, and removed by the next write.
SEQ, WRITE_SEQ, WRITE_TOKEN, AT = "seq", "write_seq", "write_token", "at"
# The highest number claimed, in the images collection's metadata beside ``WRITE_SEQ``: where it is not above
# ``WRITE_SEQ``, every write claimed was published (``Store.published_through``).
WRITE_CLAIMED = "write_claimed"
# Where a read asked for them (``Store.all_metadata``, ``written_since``, ``image_metadata`` with ``vectors``, and
# ``follow_writes``), each image's metadata dict also carries its stored vector under this key. Never stored:
# the keyword index takes it (``mmsearch.search.vector_rows``), and no metadata field starts with "_". An image
# whose caption records are not all there carries None for them.
VECTOR = "_vector"
CAPTION_VECTORS = "_caption_vectors"  # beside it, the vectors of the image's caption records, in caption order
CLAIM_LEASE = 600.0
MARKER = {"space": "l2", "sync_threshold": 1000}  # the removed and writes collections' vectors: one constant [1.0] each


def images_ef(count: int) -> int:
    """The ``ef_search`` the images' vector index needs to keep recall@10 near 0.99 at ``count`` images."""
    return next((ef for limit, ef in EF_BY_SIZE if count <= limit), EF_LARGEST)


def collection_name(kind: str, generation: str) -> str:
    """``mmsearch_images`` for the first generation, ``mmsearch_images_<gen>`` for later ones."""
    return KINDS[kind] + ("" if generation == FIRST else f"_{generation}")


def generation_name(signature: dict[str, Any], dim: int) -> str:
    """The generation of a set of models: 10 hex digits of their signature and dimension."""
    key = json.dumps({k: signature.get(k) for k in ("image_model", "text_model", "caption_model")} | {"dim": dim},
                     sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def pointer_fields(collection: Any) -> dict[str, str]:
    """The pointer collection's ``active``, ``previous`` and ``building`` ("" where unset or absent)."""
    meta = (collection.metadata if collection is not None else None) or {}
    return {key: str(meta.get(key, "")) for key in ("active", "previous", "building")}


def open_collection(client: Any, name: str, create: bool, hnsw: dict) -> Any:
    """A collection that appears only when first written to: created (with these HNSW settings) when
    ``create``, else opened if it exists, or None."""
    from ..errors import StoreError

    try:
        if create:
            return client.get_or_create_collection(name, configuration={"hnsw": hnsw}, embedding_function=None)
        return client.get_collection(name, embedding_function=None)
    except StoreError:
        raise
    except Exception:  # chromadb raises NotFoundError / ValueError depending on version
        if create:
            raise
        return None


MISSING_RECHECK = 5.0  # seconds a missing collection (frames, feedback) is taken as still missing


class Appearing:
    """A collection that appears only when first written to (``open_collection``). While it is missing, it is
    asked for again at most every ``MISSING_RECHECK`` seconds: every search asks, and on a server each miss
    is a round trip (embedded, a raised and caught error)."""

    def __init__(self, hnsw: dict) -> None:
        self._hnsw = hnsw
        self._collection: Any = None
        self._missed = -MISSING_RECHECK  # when it was last found missing

    def open(self, client: Any, name: str, create: bool = False) -> Any:
        """The collection, created when ``create``; else None while it is missing."""
        if self._collection is None and (create or time.monotonic() - self._missed >= MISSING_RECHECK):
            self._collection = open_collection(client, name, create, self._hnsw)
            self._missed = time.monotonic() if self._collection is None else 0.0
        return self._collection


def pages(collection: Any, include: Sequence[str] = ("metadatas",), where: dict | None = None) -> Iterator[dict]:
    """Every record of a collection (that ``where`` keeps), ``PAGE`` at a time (Chroma's ``get`` result of
    each page). Reading records lists their ids first (``ID_PAGE`` at a time), then reads them by id: a
    page by offset costs its offset, so offset pages of metadata grew faster than the library (at a million,
    100,000 records written since a write number: 28.5 s by offset, 18.0 s listed first; 1,000: 0.4 s both)."""
    if include:
        ids = [i for page in _id_pages(collection, where) for i in page["ids"]]
        for start in range(0, len(ids), PAGE):
            page = collection.get(ids=ids[start:start + PAGE], include=list(include))
            if page["ids"]:
                yield page
        return
    yield from _id_pages(collection, where)


def records(collection: Any, where: dict | None, vectors: bool = False) -> Iterator[tuple[str, dict]]:
    """(id, metadata) of every record ``where`` keeps, read as ``pages`` reads them; with ``vectors``, each
    metadata also carries its record's vector (``VECTOR``)."""
    for page in pages(collection, include=("metadatas", "embeddings") if vectors else ("metadatas",), where=where):
        yield from zip(page["ids"], with_vectors(page) if vectors else page["metadatas"])


def with_vectors(page: dict) -> list[dict]:
    """A ``get`` result's metadatas, each carrying its record's vector (``VECTOR``, float32)."""
    rows = np.asarray(page["embeddings"], dtype=np.float32)
    return [{**(meta or {}), VECTOR: row} for meta, row in zip(page["metadatas"], rows)]


def nearest_rows(matrix: np.ndarray, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows of ``matrix`` nearest ``vector`` by cosine, best first (ties in row order), and their
    cosines: the exact scoring of a few records, whether their vectors were read from Chroma or are the keyword
    index's own (``mmsearch.search.vector_rows``, which scores its rows ``cosines`` a block at a time)."""
    return best_of(cosines(matrix, vector), n)


def cosines(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``matrix`` with ``vector`` (float32; 0 for a zero row)."""
    vector = np.asarray(vector, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix)) * np.float32(np.linalg.norm(vector))
    return matrix @ vector / np.maximum(norms, 1e-12)


def best_of(similarity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the ``n`` largest of ``similarity``, largest first (ties in position order), and those values."""
    best = np.argpartition(-similarity, n - 1)[:n] if 0 < n < len(similarity) else np.arange(len(similarity))[:n]
    best = best[np.lexsort((best, -similarity[best]))]
    return best, similarity[best]


def vectors_by_id(collection: Any, ids: Sequence[str], where: dict | None = None) -> dict[str, np.ndarray]:
    """The stored vectors of those ``ids`` that exist (and that ``where`` keeps), ``PAGE`` ids at a time."""
    ids, out = list(ids), {}
    for start in range(0, len(ids), PAGE):
        got = collection.get(ids=ids[start:start + PAGE], where=where or None, include=["embeddings"])
        out.update({i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])})
    return out


def _id_pages(collection: Any, where: dict | None) -> Iterator[dict]:
    """The ids of the records ``where`` keeps, ``ID_PAGE`` at a time, by offset."""
    offset = 0
    while True:
        page = collection.get(include=[], where=where, limit=ID_PAGE, offset=offset)
        if not page["ids"]:
            return
        yield page
        offset += len(page["ids"])


def caption_sources(captions: Any, image_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """(text, source) of every caption of these images, in caption order, read from the caption records."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    for start in range(0, len(image_ids), PAGE // 10):
        chunk = list(image_ids[start:start + PAGE // 10])
        got = captions.get(where={"image_id": {"$in": chunk}}, include=["metadatas", "documents"])
        for cid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"]):
            image, index = split_caption_id(cid)
            out.setdefault(image, []).append((index, doc, str(meta.get("source", ""))))
    return {i: [(t, s) for _, t, s in sorted(items)] for i, items in out.items()}


def apply_search_settings(client: Any, images: str, captions: str, names: Sequence[str]) -> None:
    """Give both collections this version's value of the HNSW settings ``names`` (those Chroma lets an
    existing collection change: ``ef_search``, ``sync_threshold``, ...) where it differs."""
    for name, wanted in ((images, HNSW), (captions, HNSW_CAPTIONS)):
        collection = client.get_collection(name, embedding_function=None) if wanted is HNSW else \
            client.get_or_create_collection(name, configuration={"hnsw": HNSW_CAPTIONS}, embedding_function=None)
        set_search_settings(collection, {key: wanted[key] for key in names})


def set_search_settings(collection: Any, wanted: dict[str, Any]) -> None:
    """Give a collection these HNSW settings where its own differ (Chroma reads them when a process loads
    the index)."""
    have = (collection.configuration or {}).get("hnsw") or {}
    changes = {key: value for key, value in wanted.items() if have.get(key) != value}
    if changes:
        collection.modify(configuration={"hnsw": changes})
