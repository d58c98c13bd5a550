"""``mmsearch eval``: retrieval quality on a captioned image set, per signal and fused.

Protocol (as open_clip's retrieval benchmark): every caption is a text query whose one right answer is
its image (text -> image); every image is a query whose right answers are its captions (image -> text,
a hit when any of them is in the top K). Scores are cosines over all images or captions (exact search),
so with real weights the image signal reproduces published numbers (Flickr30k 1k test, ViT-B-32/openai,
text -> image R@1/5/10 = 58.8/83.6/90.0). Ties count against the model: the rank of the right answer is
the number of candidates scoring at least as high as it.

Rows: ``fused`` is what users are served: each caption goes through ``engine.search(caption, k=10)``'s
own code path (candidates, fusion, file-name pinning, reranker), so its R@1/5/10 are exactly the served
recall; an image not among the 10 hits counts as a miss (its rank is beyond 10, and no mean rank is
given). ``fused:<rule>`` serve the same queries under the other fusion rules of ``mmsearch.search.fusion``.
The per-signal rows are exact searches over the whole corpus, one per registered signal
(``mmsearch.search.signals``), each scored by the signal's own ``score`` (the code ranking runs): ``image``
(query vs image vector), ``caption`` (vs the image's *own* captions in the index: sidecars, manifests,
EXIF; never the evaluation captions), ``keyword`` (BM25 over those captions and file names), ``ocr`` and
``sparse`` where the index has them, and any plug-in signal.

The corpus is the user's library (``CORPORA``): every image under the dataset's folder, so recall is
measured where users search; a Karpathy split keeps its protocol (the split's images).

The relevance floor (``mmsearch.search.relevance``, 0.5 as the command line and the page serve): how often
a query keeps its right image among the hits at or above it, and how often a query whose image is not in
the corpus (the same query with its image left out) gets "no close matches", as it should.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .engine import SearchEngine
    from .search.query import Query

KS = (1, 5, 10)
CORPORA = ("library", "listed")  # what eval searches: every image under the folder, or the listed ones only
SERVED_K = 10  # served rows ask for this many hits, as a user's first page


@dataclass
class Dataset:
    """Images and captions; ``owner[j]`` is the image index of caption ``j``."""

    images: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)  # "" when the file has no language column
    root: str = ""  # the folder the image paths are relative to: the user's library
    corpus: str = "library"  # the default corpus: "listed" for a Karpathy split, whose protocol that is

    def add(self, image: str, caption: str, lang: str = "") -> None:
        if image not in self._positions:
            self._positions[image] = len(self.images)
            self.images.append(image)
        self.captions.append(caption)
        self.owner.append(self._positions[image])
        self.langs.append(lang)

    def __post_init__(self) -> None:
        self._positions = {p: i for i, p in enumerate(self.images)}


def load_dataset(captions: str | Path, images: str | Path, split: str = "test", limit: int | None = None) -> Dataset:
    """Read a Karpathy split JSON (Flickr30k / COCO ``dataset_*.json``), or a ``path,caption[,lang]`` CSV/JSONL.

    Image paths are resolved against ``images``; ``limit`` keeps the first N images.
    """
    path, root = Path(captions), Path(images)
    if path.suffix == ".json":
        rows = _karpathy(path, root, split)
    elif path.suffix in (".csv", ".jsonl"):
        rows = _table(path, root)
    else:
        raise ConfigError(f"{path}: captions must be a Karpathy .json, a .csv or a .jsonl file")
    data = Dataset(root=str(root.absolute()), corpus="listed" if path.suffix == ".json" else "library")
    for image, caption, lang in rows:
        if limit is not None and image not in data._positions and len(data.images) >= limit:
            continue
        data.add(image, caption, lang)
    if not data.captions:
        raise ConfigError(f"{path}: no captions found (split {split!r})")
    return data


def _karpathy(path: Path, root: Path, split: str) -> list[tuple[str, str, str]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path} is not a Karpathy split file ({{'images': [...]}}): {exc}") from None
    rows = []
    for entry in entries:
        if entry.get("split") != split:
            continue
        image = str((root / entry.get("filepath", "") / entry["filename"]).absolute())
        rows.extend((image, s["raw"].strip(), "") for s in entry["sentences"])
    return rows


def _table(path: Path, root: Path) -> list[tuple[str, str, str]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    else:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(str((root / r["path"]).absolute()), str(r["caption"]).strip(), str(r.get("lang") or ""))
            for r in records if r.get("path") and r.get("caption")]


# -- metrics -----------------------------------------------------------------------------------------

def ranks_text_to_image(scores: np.ndarray, owner: Sequence[int]) -> np.ndarray:
    """Rank (1 = best) of each caption's image. ``scores``: captions x images; ties count against."""
    right = scores[np.arange(len(owner)), owner]
    return (scores >= right[:, None]).sum(axis=1)


def ranks_image_to_text(scores: np.ndarray, owner: Sequence[int]) -> np.ndarray:
    """Rank of the best-ranked own caption of each image. ``scores``: images x captions."""
    owner_arr = np.asarray(owner)
    out = np.empty(scores.shape[0], dtype=np.int64)
    for i in range(scores.shape[0]):
        own = scores[i, owner_arr == i]
        out[i] = (scores[i] >= own.max()).sum() if own.size else scores.shape[1] + 1
    return out


def recall(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent and the mean rank."""
    if not len(ranks):
        return {}
    out: dict[str, float] = {f"R@{k}": round(float((ranks <= k).mean() * 100), 2) for k in KS}
    if np.isfinite(ranks).all():  # served rows know places up to 10 only: no mean rank
        out["mean_rank"] = round(float(ranks.mean()), 2)
    return out


# -- running -----------------------------------------------------------------------------------------

def evaluate(engine: SearchEngine, data: Dataset, progress: Callable[[str], None] | None = None,
             image_captions: str | Path | None = None, corpus: str | None = None) -> dict[str, Any]:
    """Index the corpus (with the images' own captions: sidecars, EXIF and the ``image_captions`` manifest;
    never the evaluation captions), then measure retrieval.

    The corpus (``CORPORA``) is by default the user's library: every image under the dataset's folder,
    for a CSV or JSONL (its captions only say which image is right for each query); the split's images
    for a Karpathy JSON, whose protocol that is. ``corpus="listed"`` keeps only the listed images.

    The ``fused`` row is what ``engine.search(caption, k=10)`` serves (same candidates, fusion, pinning and
    reranker); ``fused:<rule>`` rows serve the same queries with the other fusion rules. The per-signal
    rows are the registered signals (``mmsearch.search.signals``), each scoring every image of the corpus
    for every query with the code that ranking runs.
    """
    say = progress or (lambda _msg: None)
    corpus = corpus or data.corpus
    if corpus not in CORPORA:
        raise ConfigError(f"corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
    ids = _index_corpus(engine, data, corpus, image_captions)
    say(f"corpus: {len(ids)} images ({len(data.images)} with evaluation captions)")
    say(f"planning {len(data.captions)} queries")
    plans = [engine.plan(text, k=SERVED_K) for text in data.captions]
    table = exact_rows(engine, plans, ids)
    say(f"serving {len(data.captions)} queries")
    served = served_ranks(engine, data, plans)
    records = engine.store.image_records(ids[:len(data.images)])
    image_to_text = _image_to_text(engine, records, ids[:len(data.images)], engine.text_encoder.encode_texts(data.captions))
    result = _report(data, table, served, image_to_text)
    say(f"serving {len(data.captions)} queries at the relevance floor, with and without their image")
    result["floor"] = floor_rates(engine, data, plans)
    result.update(n_images=len(ids), n_listed=len(data.images), corpus=corpus)
    result["rows"] = {**dict.fromkeys(served, "served"), **dict.fromkeys(table, "exact")}
    return result


def _index_corpus(engine: SearchEngine, data: Dataset, corpus: str, image_captions: str | Path | None) -> list[str]:
    """Index the corpus; its image ids, the listed images first (in ``data.images`` order)."""
    from .ids import image_id
    from .paths import within

    listed = sorted(set(data.images))
    paths = [data.root] if corpus == "library" and data.root else listed
    report = engine.index(paths, captions=image_captions, prune=False)
    failed = {p for p, _ in report.failed}
    missing = [p for p in listed if p in failed or not Path(p).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} evaluation images cannot be read, e.g. {missing[0]}")
    ids = [image_id(p) for p in data.images]
    if corpus == "library" and data.root:
        known = set(ids)
        ids += sorted(i for i, meta in engine.store.all_metadata() if i not in known and within(meta["path"], data.root))
    return ids


def exact_rows(engine: SearchEngine, plans: Sequence[Query | None], ids: list[str]) -> dict[str, np.ndarray]:
    """Each registered signal's score of every image in ``ids`` for every planned query (queries x images),
    through the signal's own ``score`` (``mmsearch.search.signals``, ``Context.exhaustive``).

    An image lacking the signal scores ``-inf`` (it never ties with the right answer; a right answer that
    lacks it ranks last); a query for which the signal has nothing to say scores 0 everywhere. Rows no
    query scores on at all (the image row of the offline profile, keywords that never match) are left out.
    """
    from .search import signals
    from .search.signals import Context, Reads

    store = engine.store
    reads, vectors = Reads(store), store.image_vectors(ids)
    keywords = engine.keyword_index()
    ocr = engine.ocr_matcher() if engine.has_ocr_texts() else None
    out: dict[str, np.ndarray] = {}
    for row, planned in enumerate(plans):
        if planned is None:
            continue
        context = Context(store, planned, len(ids), engine.has_image_vectors, keywords, ocr, reads, exhaustive=True,
                          vectors=vectors)
        for signal in signals.registered():
            if not signal.takes_part(context):
                continue
            matrix = out.setdefault(signal.name, np.full((len(plans), len(ids)), np.nan))
            scored = signal.score(context, ids)
            matrix[row] = 0.0 if scored is None else [-np.inf if (v := scored.get(i)) is None else v for i in ids]
    return {name: np.nan_to_num(m, nan=0.0) for name, m in out.items() if np.isfinite(m).any() and np.nan_to_num(
        m, nan=0.0, neginf=0.0).any()}


def served_ranks(engine: SearchEngine, data: Dataset, plans: Sequence[Query | None] | None = None
                 ) -> dict[str, np.ndarray]:
    """For every caption, the place (1 = first) of its image among the hits that ``engine.search(caption,
    k=10)`` serves, or ``inf`` when it is not among them.

    Rows: ``fused`` (the configured rule, with the reranker if one is set), ``fused:<rule>`` for the other
    fusion rules, and ``fused:no-rerank`` when a reranker is set. ``plans``: the captions' planned queries,
    when the caller has them.
    """
    from .ids import image_id
    from .search.fusion import RULES

    shipped = engine.config.fusion
    rules = [shipped] + [r for r in RULES if r != shipped]
    names = {shipped: "fused", **{r: f"fused:{r}" for r in rules[1:]}}
    out = {name: np.full(len(data.captions), np.inf) for name in names.values()}
    if engine.reranker is not None:
        out["fused:no-rerank"] = np.full(len(data.captions), np.inf)
    for row, text in enumerate(data.captions):
        planned = plans[row] if plans is not None else engine.plan(text, k=SERVED_K)
        if planned is None:
            continue
        served = {names[rule]: hits for rule, hits in engine.serve_rules(planned, rules).items()}
        if engine.reranker is not None:
            served["fused:no-rerank"] = engine.serve_rules(planned, [shipped], rerank=False)[shipped]
        right = image_id(data.images[data.owner[row]])
        for name, hits in served.items():
            places = [n for n, hit in enumerate(hits, 1) if image_id(hit.path) == right]
            out[name][row] = places[0] if places else np.inf
    return out


def floor_rates(engine: SearchEngine, data: Dataset, plans: Sequence[Query | None]) -> dict[str, float]:
    """At the default relevance floor (``MIN_RELEVANCE``): the share of queries whose right image is among
    the hits (``kept``), and the share of queries with their image left out of the corpus that get no hit
    at all (``empty_without_image``: "no close matches", as a query with no right image should)."""
    from dataclasses import replace

    from .config import MIN_RELEVANCE
    from .ids import image_id

    kept = empty = asked = 0
    for row, planned in enumerate(plans):
        if planned is None:
            continue
        asked += 1
        right = image_id(data.images[data.owner[row]])
        floored = replace(planned, min_relevance=MIN_RELEVANCE)
        kept += any(image_id(h.path) == right for h in engine.serve(floored))
        empty += not engine.serve(replace(floored, exclude=right))
    return {"min_relevance": MIN_RELEVANCE, "queries": asked, "kept": kept / asked if asked else 0.0,
            "empty_without_image": empty / asked if asked else 0.0}


def _image_to_text(engine: SearchEngine, records: dict, ids: list[str], queries: np.ndarray) -> dict[str, np.ndarray]:
    if not engine.has_image_vectors:
        return {}
    matrix = np.stack([records[i][1] for i in ids])
    return {"image": matrix @ queries.T}


def _report(data: Dataset, table: dict[str, np.ndarray], served: dict[str, np.ndarray],
            image_to_text: dict[str, np.ndarray]) -> dict[str, Any]:
    def block(rows: np.ndarray, images: list[int]) -> dict[str, Any]:
        owner = [data.owner[j] for j in rows]
        out: dict[str, Any] = {name: {"text_to_image": recall(ranks[rows])} for name, ranks in served.items()}
        for name, scores in table.items():
            out[name] = {"text_to_image": recall(ranks_text_to_image(scores[rows], owner))}
            if name in image_to_text:
                sub = image_to_text[name][np.ix_(images, rows)]
                remap = {img: n for n, img in enumerate(images)}
                out[name]["image_to_text"] = recall(ranks_image_to_text(sub, [remap.get(o, -1) for o in owner]))
        return out

    every = np.arange(len(data.captions))
    result: dict[str, Any] = {"signals": block(every, list(range(len(data.images)))),
                              "n_images": len(data.images), "n_captions": len(data.captions)}
    langs = sorted(set(data.langs) - {""})
    if langs:
        result["languages"] = {}
        for lang in langs:
            rows = np.array([j for j, code in enumerate(data.langs) if code == lang])
            images = sorted({data.owner[j] for j in rows})
            result["languages"][lang] = {"signals": block(rows, images), "n_captions": len(rows), "n_images": len(images)}
    return result


def format_table(result: dict[str, Any]) -> str:
    """The recall table for people."""
    listed = result.get("n_listed", result["n_images"])
    lines = [f"corpus: {result['n_images']} images ({listed} with evaluation captions, {result.get('corpus', 'listed')})",
             f"{result['n_captions']} queries (recall in %, ties count against; "
             f"served = what engine.search(k={SERVED_K}) returns, exact = one signal over all images)"]
    sections = [("all", result["signals"])] + [(k, v["signals"]) for k, v in result.get("languages", {}).items()]
    for title, signals in sections:
        lines.append(f"\n[{title}]{'':<17}{'text -> image':^30}  {'image -> text':^30}")
        lines.append(f"{'row':<16} {'':<7} " + " ".join(f"{h:>7}" for h in ("R@1", "R@5", "R@10", "mean")) + "  "
                     + " ".join(f"{h:>7}" for h in ("R@1", "R@5", "R@10", "mean")))
        for name, dirs in signals.items():
            cells = []
            for direction in ("text_to_image", "image_to_text"):
                r = dirs.get(direction)
                cells.append(" ".join(f"{r[k]:7.1f}" if k in r else f"{'-':>7}" for k in ("R@1", "R@5", "R@10", "mean_rank"))
                             if r else f"{'n/a':>7} " * 4)
            kind = result.get("rows", {}).get(name, "")
            lines.append(f"{name:<16} {kind:<7} {cells[0]}  {cells[1]}")
    floor = result.get("floor")
    if floor:
        lines.append(f"\nrelevance floor {floor['min_relevance']} (what search shows by default): the right image is "
                     f"kept for {100 * floor['kept']:.1f} % of queries; with it left out of the corpus, "
                     f"{100 * floor['empty_without_image']:.1f} % of queries get no close matches")
    return "\n".join(lines)


# -- feedback: a simulated user ----------------------------------------------------------------------

FEEDBACK_ROUNDS = 2
NEGATIVES_PER_ROUND = 2  # the top wrong hits a simulated user marks as not relevant in each round


def evaluate_feedback(engine: SearchEngine, data: Dataset, rounds: int = FEEDBACK_ROUNDS) -> dict[str, Any]:
    """A simulated user refining each query (``engine.search(positive=, negative=)``), and one who returns.

    - **Rounds:** after each page of 10, the right photo is marked relevant if it is on the page, and the
      top wrong hits (``NEGATIVES_PER_ROUND``) not relevant; R@1/5/10 of the served hits after 0, 1, ...
      ``rounds`` rounds of marks.
    - **Returning user:** for images with two or more evaluation captions, the first is asked and marked
      as above (lasting marks), then the second, a paraphrase, is asked: the right photo's place in its
      10 hits with and without the lasting marks (``feedback_weight`` 0).

    The lasting marks the simulation makes are removed at the end (only those: marks of other queries
    in the index stay).
    """
    from dataclasses import replace

    from .engine import SearchEngine

    result: dict[str, Any] = {"rounds": {}}
    places = {r: [] for r in range(rounds + 1)}
    for row, text in enumerate(data.captions):
        right, liked, unliked = data.images[data.owner[row]], [], []
        for r in range(rounds + 1):
            paths = [h.path for h in engine.search(text, k=SERVED_K, positive=liked, negative=unliked)]
            places[r].append(paths.index(right) + 1 if right in paths else np.inf)
            _mark(paths, right, liked, unliked)
    result["rounds"] = {str(r): recall(np.array(p, dtype=float)) for r, p in places.items()}
    pairs = _paraphrase_pairs(data)
    without = SearchEngine(config=replace(engine.config, feedback_weight=0.0), encoders=engine.encoders)
    with_marks, plain = [], []
    try:
        for first, second, right in pairs:
            paths = [h.path for h in engine.search(first, k=SERVED_K)]
            liked, unliked = [], []
            _mark(paths, right, liked, unliked)
            for path, relevant in [(p, True) for p in liked] + [(p, False) for p in unliked]:
                engine.feedback(first, path, relevant)
            for who, out in ((engine, with_marks), (without, plain)):
                served = [h.path for h in who.search(second, k=SERVED_K)]
                out.append(served.index(right) + 1 if right in served else np.inf)
    finally:
        for first, _, _ in pairs:
            engine.forget_feedback(query=first)
    result["returning"] = {"pairs": len(pairs), "with_marks": recall(np.array(with_marks, dtype=float)),
                           "without_marks": recall(np.array(plain, dtype=float))}
    return result


def _mark(paths: list[str], right: str, liked: list[str], unliked: list[str]) -> None:
    """What the simulated user marks on one page of hits."""
    if right in paths and right not in liked:
        liked.append(right)
    wrong = [p for p in paths if p != right and p not in unliked][:NEGATIVES_PER_ROUND]
    unliked.extend(wrong)


def _paraphrase_pairs(data: Dataset) -> list[tuple[str, str, str]]:
    """(first caption, second caption, image) for every image with two evaluation captions or more."""
    by_image: dict[int, list[int]] = {}
    for row, owner in enumerate(data.owner):
        by_image.setdefault(owner, []).append(row)
    return [(data.captions[rows[0]], data.captions[rows[1]], data.images[image])
            for image, rows in by_image.items() if len(rows) >= 2]


def format_feedback(result: dict[str, Any]) -> str:
    """The feedback simulation for people."""
    lines = ["\nfeedback (served, k=10)      R@1     R@5    R@10"]
    for r, rec in result["rounds"].items():
        lines.append(f"after {r} round(s) of marks {rec['R@1']:7.1f} {rec['R@5']:7.1f} {rec['R@10']:7.1f}")
    back = result["returning"]
    for name in ("without_marks", "with_marks"):
        rec = back[name]
        if rec:
            label = f"paraphrase, {name.replace('_', ' ')}"
            lines.append(f"{label:<28} {rec['R@1']:7.1f} {rec['R@5']:7.1f} {rec['R@10']:7.1f}   ({back['pairs']} pairs)")
    return "\n".join(lines)
