"""``mmsearch eval``: retrieval quality on a captioned image set, per signal and fused.

Protocol (as open_clip's retrieval benchmark): every caption is a text query whose one right answer is
its image (text -> image); every image is a query whose right answers are its captions (image -> text,
a hit when any of them is in the top K). Scores are cosines over all images or captions (exact search),
so with real weights the image signal reproduces published numbers (Flickr30k 1k test, ViT-B-32/openai,
text -> image R@1/5/10 = 58.8/83.6/90.0). Ties count against the model: the rank of the right answer is
the number of candidates scoring at least as high as it.

Signals: ``image`` (query vs image vector), ``caption`` (vs the image's *own* captions in the index:
sidecars, manifests, EXIF; never the evaluation captions), ``keyword`` (BM25 over those captions and
file names), ``fused`` (the engine's min-max weighted fusion), ``rrf`` (reciprocal rank fusion, for
comparison) and, with a reranker, ``rerank`` (fused, then the top 30 reordered by the cross-encoder).
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

KS = (1, 5, 10)
RRF_K = 60


@dataclass
class Dataset:
    """Images and captions; ``owner[j]`` is the image index of caption ``j``."""

    images: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)  # "" when the file has no language column

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
    data = Dataset()
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
    out = {f"R@{k}": round(float((ranks <= k).mean() * 100), 2) for k in KS}
    out["mean_rank"] = round(float(ranks.mean()), 2)
    return out


def minmax(scores: np.ndarray) -> np.ndarray:
    """Rows scaled to [0, 1] (constant rows become 1), as the engine's fusion does per query."""
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    span = np.where(high - low < 1e-9, 1.0, high - low)
    return np.where(high - low < 1e-9, 1.0, (scores - low) / span)


def fused(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of min-max normalised signals (NaN = signal missing for that pair)."""
    total = weight = 0.0
    for name, s in signals.items():
        w = weights.get(name, 0.0)
        if w <= 0:
            continue
        present = ~np.isnan(s)
        row_min = np.nan_to_num(np.where(present, s, np.inf).min(axis=1, keepdims=True), posinf=0.0)
        total = total + np.where(present, w * minmax(np.where(present, s, row_min)), 0.0)
        weight = weight + np.where(present, w, 0.0)
    return total / np.where(np.asarray(weight) == 0, 1.0, weight)


def rrf(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Reciprocal rank fusion: sum over signals of 1 / (60 + rank)."""
    total = 0.0
    for name, s in signals.items():
        if weights.get(name, 0.0) > 0:
            order = np.argsort(-np.nan_to_num(s, nan=-np.inf), axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(1, s.shape[1] + 1)[None, :].repeat(s.shape[0], 0), axis=1)
            total = total + 1.0 / (RRF_K + rank)
    return np.asarray(total, dtype=np.float64)


# -- running -----------------------------------------------------------------------------------------

def evaluate(engine: SearchEngine, data: Dataset, progress: Callable[[str], None] | None = None,
             image_captions: str | Path | None = None) -> dict[str, Any]:
    """Index the images (with their own captions: sidecars, EXIF and the ``image_captions`` manifest; never
    the evaluation captions), score every signal, return the recall table."""
    from .indexer import image_id

    say = progress or (lambda _msg: None)
    report = engine.index(sorted(set(data.images)), captions=image_captions, prune=False)
    missing = [p for p, reason in report.failed]
    if missing:
        raise ConfigError(f"{len(missing)} evaluation images cannot be read, e.g. {missing[0]}")
    ids = [image_id(p) for p in data.images]
    records = engine.store.image_records(ids)
    say(f"encoding {len(data.captions)} captions")
    queries = engine.text_encoder.encode_texts(data.captions)
    signals = _signals(engine, data, ids, records, queries)
    weights = {"image": 1 - engine.config.caption_weight, "caption": engine.config.caption_weight,
               "keyword": engine.config.keyword_weight}
    available = {k: v for k, v in signals.items() if not np.isnan(v).all()}
    table: dict[str, np.ndarray] = {**available, "fused": fused(available, weights), "rrf": rrf(available, weights)}
    if engine.reranker is not None:
        say("reranking")
        table["rerank"] = _reranked(engine, data, records, ids, table["fused"])
    image_to_text = _image_to_text(engine, records, ids, queries)
    return _report(data, table, image_to_text)


def _signals(engine: SearchEngine, data: Dataset, ids: list[str], records: dict, queries: np.ndarray
             ) -> dict[str, np.ndarray]:
    from .keywords import KeywordIndex, image_text
    from .store import caption_ids, split_caption_id

    n_q, n_i = len(data.captions), len(ids)
    out = {"image": np.full((n_q, n_i), np.nan), "caption": np.full((n_q, n_i), np.nan)}
    if engine.signature["image_model"] != "none":
        matrix = np.stack([records[i][1] for i in ids])
        out["image"] = queries @ matrix.T
    own: dict[str, list[np.ndarray]] = {}
    for cid, vec in engine.store.caption_vectors_by_id([c for i in ids for c in caption_ids(i, records[i][0])]).items():
        own.setdefault(split_caption_id(cid)[0], []).append(vec)
    for col, i in enumerate(ids):
        if i in own:
            out["caption"][:, col] = (queries @ np.stack(own[i]).T).max(axis=1)
    keywords = KeywordIndex.build((i, image_text(records[i][0])) for i in ids)
    out["keyword"] = np.stack([keywords.score_array(text) for text in data.captions]).astype(np.float64)
    if not out["keyword"].any():
        out["keyword"][:] = np.nan
    return out


def _reranked(engine: SearchEngine, data: Dataset, records: dict, ids: list[str], base: np.ndarray) -> np.ndarray:
    from .rerank import RERANK_TOP, image_text_for_rerank

    texts = [image_text_for_rerank(records[i][0]) for i in ids]
    out = base.copy()
    for row, query in enumerate(data.captions):
        top = np.argsort(-base[row], kind="stable")[:RERANK_TOP]
        raw = engine.reranker.score(query, [texts[c] for c in top])  # type: ignore[union-attr]
        out[row, top] = 2.0 + raw - raw.min()  # reordered, and always above everything outside the top
    return out


def _image_to_text(engine: SearchEngine, records: dict, ids: list[str], queries: np.ndarray) -> dict[str, np.ndarray]:
    if engine.signature["image_model"] == "none":
        return {}
    matrix = np.stack([records[i][1] for i in ids])
    return {"image": matrix @ queries.T}


def _report(data: Dataset, table: dict[str, np.ndarray], image_to_text: dict[str, np.ndarray]) -> dict[str, Any]:
    def block(rows: np.ndarray, images: list[int]) -> dict[str, Any]:
        owner = [data.owner[j] for j in rows]
        out: dict[str, Any] = {}
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
    lines = [f"{result['n_images']} images, {result['n_captions']} captions (recall in %, ties count against)"]
    sections = [("all", result["signals"])] + [(k, v["signals"]) for k, v in result.get("languages", {}).items()]
    for title, signals in sections:
        lines.append(f"\n[{title}]  {'text -> image':^30}  {'image -> text':^30}")
        lines.append(f"{'signal':<8} " + " ".join(f"{h:>7}" for h in ("R@1", "R@5", "R@10", "mean")) + "  "
                     + " ".join(f"{h:>7}" for h in ("R@1", "R@5", "R@10", "mean")))
        for name, dirs in signals.items():
            cells = []
            for direction in ("text_to_image", "image_to_text"):
                r = dirs.get(direction)
                cells.append(" ".join(f"{r[k]:7.1f}" for k in ("R@1", "R@5", "R@10", "mean_rank")) if r else
                             f"{'n/a':>7} " * 4)
            lines.append(f"{name:<8} {cells[0]}  {cells[1]}")
    return "\n".join(lines)
