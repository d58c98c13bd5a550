"""The torch-free text runtime (layers in onnxruntime or numpy) gives sentence-transformers' own vectors, and
falls back to it for anything else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_photos, tiny_sentence_model

from mmsearch import ModelLoadError
from mmsearch.encoders.sentence import SentenceEncoder

TEXTS = ["a red bicycle", "", "一只黑猫睡在沙发上", "Ein Hund läuft am Strand entlang 🐕",
         "word " * 400,  # longer than the model's limit: truncated the same way
         "UPPER case, punctuation!? and numbers 12345"]


def _reference(folder: str | Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.sum(got * want, axis=1).min() >= 0.9999


def test_packaged_minilm_runs_without_torch_with_sentence_transformers_vectors(minilm):
    encoder = SentenceEncoder(minilm)
    assert encoder.runtime == "onnxruntime" and encoder.dim == 384
    _assert_same(encoder.encode_texts(TEXTS), _reference(minilm, TEXTS))
    # batching and the length sort do not change a text's vector
    alone = np.vstack([encoder.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, encoder.encode_texts(TEXTS), atol=1e-5)


@pytest.mark.parametrize("runtime", ["numpy", "auto"])
@pytest.mark.parametrize(("arch", "pooling", "dense"), [
    ("bert", "cls", {"bias": True}),  # Dense with the default tanh
    ("distilbert", "mean", {"bias": False, "activation_function": "identity"}),  # the shape of the default model
    ("xlm-roberta", "max", None),  # positions offset past the padding index
])
def test_bert_family_folders_give_sentence_transformers_vectors(minilm, tmp_path, arch, pooling, dense, runtime):
    if dense and dense.get("activation_function") == "identity":
        import torch

        dense["activation_function"] = torch.nn.Identity()
    folder = tiny_sentence_model(tmp_path, minilm, arch, pooling, dense)
    encoder = SentenceEncoder(str(folder), runtime=runtime)
    assert encoder.runtime == {"numpy": "numpy", "auto": "onnxruntime"}[runtime] and encoder.dim == (32 if dense else 64)
    _assert_same(encoder.encode_texts(TEXTS), _reference(folder, TEXTS))


def test_old_format_dense_weights_in_pytorch_model_bin(minilm, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tiny_sentence_model(tmp_path, minilm, "bert", "mean", {"bias": True})
    want = _reference(folder, TEXTS)
    dense = next(folder.glob("*_Dense"))
    torch.save(load_file(dense / "model.safetensors"), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    _assert_same(SentenceEncoder(str(folder), runtime="numpy").encode_texts(TEXTS), want)


def test_unsupported_folders_fall_back_to_sentence_transformers(minilm, tmp_path):
    folder = tmp_path / "sqrt-pooling"
    shutil.copytree(minilm, folder)
    (folder / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 384, "pooling_mode_mean_sqrt_len_tokens": true}')

    encoder = SentenceEncoder(str(folder))
    assert encoder.runtime == "torch"
    _assert_same(encoder.encode_texts(TEXTS), _reference(folder, TEXTS))
    with pytest.raises(ModelLoadError, match="cannot run with text_runtime 'numpy'.*pooling"):
        SentenceEncoder(str(folder), runtime="numpy")
    assert SentenceEncoder(minilm, runtime="torch").runtime == "torch"


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_text_query_imports_neither_torch_nor_sentence_transformers(make_engine, tmp_path, tiny_clip, minilm):
    engine = make_engine()
    engine.index(make_photos(tmp_path / "photos"))
    script = ("import sys; from mmsearch import Config, SearchEngine\n"
              "hits = SearchEngine(Config.from_env()).search('a black cat', k=3)\n"
              "print(hits[0].path)\n"
              "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'open_clip') if m in sys.modules))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMSEARCH_DB": str(engine.config.db),
           "MMSEARCH_CLIP_MODEL": tiny_clip[0], "MMSEARCH_CLIP_PRETRAINED": tiny_clip[1], "MMSEARCH_TEXT_MODEL": minilm}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    first, loaded = run.stdout.strip().splitlines()
    assert Path(first).name == engine.search("a black cat", k=3)[0].path.rsplit("/", 1)[-1]
    assert loaded == "[]"


def test_a_hub_id_already_in_the_cache_runs_without_torch_or_network(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = tmp_path / "hub" / "models--someone--caption-model" / "snapshots" / "0123abcd"
    shutil.copytree(minilm, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")

    encoder = SentenceEncoder("someone/caption-model", cache_dir=str(tmp_path / "hub"))

    assert encoder.runtime == "onnxruntime" and encoder.model_id == "sentence-transformers:someone/caption-model"
    _assert_same(encoder.encode_texts(TEXTS), _reference(minilm, TEXTS))
