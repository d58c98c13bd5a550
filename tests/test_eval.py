"""``mmsearch eval``: recall arithmetic (ties included), dataset formats, and an end-to-end run on a
generated set where the right answers are known by construction (captions ranked by the real MiniLM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import save_image

from mmsearch.cli import main
from mmsearch.evaluation import evaluate, load_dataset, ranks_image_to_text, ranks_text_to_image, recall, served_ranks
from mmsearch.ids import image_id


def test_recall_arithmetic_counts_ties_against_the_model():
    text_to_image = np.array([[0.9, 0.9, 0.1],    # right answer 0 tied with image 1: rank 2
                              [0.2, 0.8, 0.3],    # rank 1
                              [0.5, 0.4, 0.3]])   # right answer 2 is last: rank 3
    ranks = ranks_text_to_image(text_to_image, [0, 1, 2])
    assert ranks.tolist() == [2, 1, 3]
    assert recall(ranks) == {"R@1": 33.33, "R@5": 100.0, "R@10": 100.0, "mean_rank": 2.0}
    image_to_text = np.array([[0.5, 0.5, 0.1, 0.1],   # own caption 0 tied with caption 1: rank 2
                              [0.1, 0.9, 0.2, 0.3],   # rank 1
                              [0.9, 0.1, 0.2, 0.8]])  # own captions 2, 3: best is 0.8, beaten by 0.9: rank 2
    ranks = ranks_image_to_text(image_to_text, [0, 1, 2, 2])
    assert ranks.tolist() == [2, 1, 2]
    assert recall(ranks) == {"R@1": 33.33, "R@5": 100.0, "R@10": 100.0, "mean_rank": 1.67}
    constant = np.ones((3, 3))
    assert recall(ranks_text_to_image(constant, [0, 1, 2]))["R@1"] == 0.0  # a constant scorer earns nothing


def karpathy(tmp_path):
    entries = [{"filename": f"{i}.jpg", "split": "test" if i < 3 else "train",
                "sentences": [{"raw": f"caption {j} of image {i}"} for j in range(5)]} for i in range(5)]
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return path


def test_dataset_formats(tmp_path):
    data = load_dataset(karpathy(tmp_path), tmp_path / "flickr30k-images")
    assert len(data.images) == 3 and len(data.captions) == 15 and data.owner[:6] == [0, 0, 0, 0, 0, 1]
    assert data.images[0] == str((tmp_path / "flickr30k-images" / "0.jpg").absolute())
    assert len(load_dataset(karpathy(tmp_path), tmp_path, split="train").images) == 2
    (tmp_path / "xtd.jsonl").write_text('{"path": "a.jpg", "caption": "ein Hund", "lang": "de"}\n'
                                        '{"path": "a.jpg", "caption": "a dog", "lang": "en"}\n')
    data = load_dataset(tmp_path / "xtd.jsonl", tmp_path)
    assert data.langs == ["de", "en"] and data.owner == [0, 0]
    assert len(load_dataset(karpathy(tmp_path), tmp_path, limit=2).images) == 2


SUBJECTS = [  # (own caption stored with the image, two evaluation queries: a paraphrase each)
    ("a black cat sleeping on a sofa", "a kitten napping on the couch", "the dark cat dozes on a settee"),
    ("a red bicycle leaning against a brick wall", "a bike parked by a wall", "a crimson bike propped on bricks"),
    ("a plate of spaghetti with tomato sauce", "pasta dinner with red sauce", "a dish of noodles and tomato"),
    ("waves rolling onto a sandy beach at sunset", "the ocean shore in the evening", "surf on the sand at dusk"),
    ("snowy mountain peaks under a blue sky", "alpine summits covered in snow", "high mountains with snow"),
    ("a steaming cup of coffee on a wooden table", "hot coffee in a mug", "an espresso cup on a table"),
]


@pytest.fixture
def eval_set(tmp_path):
    root = tmp_path / "set"
    rows = ["path,caption,lang"]
    for i, (own, *queries) in enumerate(SUBJECTS):
        image = save_image(root / f"img{i}.jpg", (30 * i, 200 - 25 * i, 90))
        image.with_name(image.name + ".txt").write_text(own + "\n")
        rows += [f"img{i}.jpg,{queries[0]},en", f"img{i}.jpg,{queries[1]},xx"]
    (root / "eval.csv").write_text("\n".join(rows) + "\n")
    return root


def test_end_to_end_every_signal_and_per_language(eval_set, make_engine):
    engine = make_engine(caption_weight=1.0)  # random CLIP weights: captions carry the meaning here
    data = load_dataset(eval_set / "eval.csv", eval_set)
    result = evaluate(engine, data)
    assert result["n_images"] == 6 and result["n_captions"] == 12
    assert engine.stats()["captions"] == 6  # evaluation captions were never indexed as image captions
    signals = result["signals"]
    assert set(signals) == {"image", "caption", "keyword", "fused", "fused:mean", "fused:low", "fused:skip", "fused:rrf"}
    assert result["rows"]["fused"] == "served" and result["rows"]["caption"] == "exact"
    assert signals["caption"]["text_to_image"]["R@1"] >= 90 and signals["caption"]["text_to_image"]["R@5"] == 100
    assert signals["fused"]["text_to_image"]["R@1"] >= 90  # image weight 0: captions and keywords rank
    assert set(signals["image"]) == {"text_to_image", "image_to_text"} and "image_to_text" not in signals["caption"]
    assert signals["image"]["text_to_image"]["R@10"] == 100.0  # 6 images: everything is in the top 10
    assert set(result["languages"]) == {"en", "xx"} and result["languages"]["en"]["n_captions"] == 6
    floor = result["floor"]  # at the default relevance floor: right images kept, image-less queries empty
    assert floor["min_relevance"] == 0.5 and floor["queries"] == 12
    assert floor["kept"] >= 0.5 and floor["empty_without_image"] >= 0.5, floor


def test_cli_json_has_the_documented_shape(eval_set, tiny_clip, minilm, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MMSEARCH_CLIP_MODEL", tiny_clip[0])
    monkeypatch.setenv("MMSEARCH_CLIP_PRETRAINED", tiny_clip[1])
    monkeypatch.setenv("MMSEARCH_TEXT_MODEL", minilm)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["eval", str(eval_set), "--captions", str(eval_set / "eval.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    t2i = result["signals"]["fused"]["text_to_image"]
    assert {"R@1", "R@5", "R@10"} <= set(t2i) <= {"R@1", "R@5", "R@10", "mean_rank"}
    assert all(0 <= t2i[k] <= 100 for k in ("R@1", "R@5", "R@10"))
    assert set(result["signals"]["caption"]["text_to_image"]) == {"R@1", "R@5", "R@10", "mean_rank"}
    assert result["n_images"] == 6 and result["n_captions"] == 12
    assert list((tmp_path / "cache" / "mmsearch").glob("eval-*"))  # vectors cached for the next run
    assert main(["eval", str(eval_set), "--captions", str(eval_set / "eval.csv")]) == 0
    table = capsys.readouterr().out
    assert table.startswith("corpus: 6 images (6 with evaluation captions, library)\n12 queries") and "[en]" in table
    assert "fused" in table and "relevance floor 0.5 (what search shows by default): the right image is kept" in table


def test_eval_fused_row_is_exactly_the_recall_users_are_served(tmp_path, make_engine):
    """A set of captioned and uncaptioned photos (more than one page of 10): eval's fused R@1/5/10 equal
    the recall computed from engine.search(q, k=10), query by query."""
    root = tmp_path / "mixed"
    rows = ["path,caption"]
    for i, (own, *queries) in enumerate(SUBJECTS):
        image = save_image(root / f"captioned{i}.jpg", (30 * i, 200 - 25 * i, 90))
        image.with_name(image.name + ".txt").write_text(own + "\n")
        rows += [f"captioned{i}.jpg,{q}" for q in queries]
    for i in range(24):
        save_image(root / f"plain{i:02d}.png", ((53 * i) % 256, (97 * i) % 256, (31 * i) % 256))
    rows += [f"plain{i:02d}.png,a photo number {i}" for i in range(0, 24, 4)]
    (root / "eval.csv").write_text("\n".join(rows) + "\n")
    engine = make_engine()
    data = load_dataset(root / "eval.csv", root)
    result = evaluate(engine, data)
    places = []
    for text, owner in zip(data.captions, data.owner):
        ids = [image_id(h.path) for h in engine.search(text, k=10)]
        right = image_id(data.images[owner])
        places.append(ids.index(right) + 1 if right in ids else np.inf)
    expected = recall(np.array(places, dtype=float))
    assert result["signals"]["fused"]["text_to_image"] == expected
    assert served_ranks(engine, data)["fused"].tolist() == places
    assert any(np.isinf(places)) or expected["R@1"] < 100  # the set is hard enough to tell rows apart
    # The corpus is the folder: 18 unlisted images outnumber the 12 listed ones, and every row searches all 30.
    assert (result["n_images"], result["n_listed"], result["corpus"]) == (30, 12, "library")


def test_eval_searches_the_whole_folder_unless_asked_for_the_listed_images(tmp_path, make_engine):
    root = tmp_path / "library"
    for i, (own, *_) in enumerate(SUBJECTS):
        save_image(root / f"img{i}.jpg", (30 * i, 200 - 25 * i, 90)).with_name(f"img{i}.jpg.txt").write_text(own + "\n")
    for i in range(10):  # distractors named like the query: the listed-only corpus never sees them
        save_image(root / "other" / f"kitten-couch-{i}.png", (9 * i, 40, 200)).with_name(f"kitten-couch-{i}.png.txt") \
            .write_text("a kitten napping on the couch\n")
    (root / "eval.csv").write_text("path,caption\nimg0.jpg,a kitten napping on the couch\n")
    data = load_dataset(root / "eval.csv", root)
    library = evaluate(make_engine(), data)
    listed = evaluate(make_engine(db=str(tmp_path / "listed-db")), data, corpus="listed")
    assert (library["n_images"], listed["n_images"]) == (16, 1)
    # Ten distractors carry the query as their own caption: in the library the right photo is not first.
    assert library["signals"]["caption"]["text_to_image"]["R@1"] == 0.0
    assert listed["signals"]["caption"]["text_to_image"]["R@1"] == 100.0
    assert library["signals"]["fused"]["text_to_image"]["R@1"] == 0.0
