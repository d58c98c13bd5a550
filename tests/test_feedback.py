"""Search that learns from its user: examples refine a query in each vector space (Rocchio), negatives
rank last, lasting marks lift or sink photos for similar queries, survive a new engine, and clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import names, save_image

from mmsearch import SearchEngine
from mmsearch.cli import main
from mmsearch.errors import QueryError
from mmsearch.search.feedback import ALPHA, BETA, GAMMA, feedback_scores, rocchio

# Captions the real MiniLM reads; "a dog ..." queries are what is asked.
DOGS = {"dog-beach.jpg": "a dog running on the beach", "dog-sofa.jpg": "a small dog asleep on a sofa",
        "dog-snow.jpg": "a dog playing in the snow", "cat.jpg": "a cat on a windowsill", "car.jpg": "a red car"}


@pytest.fixture
def pets(tmp_path):
    root = tmp_path / "pets"
    for n, (name, caption) in enumerate(DOGS.items()):
        image = save_image(root / name, (40 * n, 200 - 30 * n, 90))
        image.with_name(image.name + ".txt").write_text(caption + "\n")
    return root


def test_rocchio_is_the_documented_formula():
    q, pos, neg = np.array([1.0, 0.0, 0.0]), [np.array([0.0, 1.0, 0.0])], [np.array([0.0, 0.0, 1.0])]
    expected = ALPHA * q + BETA * pos[0] - GAMMA * neg[0]
    np.testing.assert_allclose(rocchio(q, pos, neg), expected / np.linalg.norm(expected), rtol=1e-6)
    np.testing.assert_allclose(rocchio(q, [], []), q)


def test_examples_refine_the_caption_query_and_negatives_rank_last(make_engine, pets):
    engine = make_engine(caption_weight=1.0, keyword_weight=0.0)
    engine.index([pets])
    plain = names(engine.search("a dog", k=5))
    assert set(plain[:3]) == {"dog-beach.jpg", "dog-sofa.jpg", "dog-snow.jpg"}
    liked = names(engine.search("a dog", k=5, positive=[pets / "dog-snow.jpg"]))
    assert liked[0] == "dog-snow.jpg"  # the caption query moved toward the liked photo's caption
    unliked = names(engine.search("a dog", k=5, negative=[pets / plain[0]]))
    assert unliked[-1] == plain[0] and unliked[0] != plain[0]  # marked irrelevant: never first, ranked last
    only_examples = names(engine.search(None, k=2, positive=[pets / "cat.jpg"]))
    assert "cat.jpg" in only_examples  # examples alone make the query
    with pytest.raises(QueryError, match="not in the index"):
        engine.search("a dog", positive=[pets / "missing.jpg"])


def test_a_lasting_mark_lifts_for_similar_queries_survives_a_new_engine_and_clears(make_engine, pets, tmp_path):
    engine = make_engine(caption_weight=1.0, keyword_weight=0.0)
    engine.index([pets])
    before = names(engine.search("a dog lying on a couch", k=5))
    assert before[0] == "dog-sofa.jpg"
    engine.feedback("a dog on a couch", pets / "dog-snow.jpg", relevant=True)
    engine.feedback("a dog on a couch", pets / "dog-sofa.jpg", relevant=False)
    again = make_engine(caption_weight=1.0, keyword_weight=0.0)  # a new engine on the same index
    hits = again.search("a dog lying on a couch", k=5)  # a paraphrase of the marked query
    assert names(hits)[0] == "dog-snow.jpg" and hits[0].scores["feedback"] > 0
    assert names(hits).index("dog-sofa.jpg") > before.index("dog-sofa.jpg")
    assert "feedback" not in again.search("a red car", k=1)[0].scores  # unrelated queries are untouched
    assert [(m.query, Path(m.path).name, m.relevant) for m in again.feedback_marks()] == [
        ("a dog on a couch", "dog-snow.jpg", True), ("a dog on a couch", "dog-sofa.jpg", False)]
    assert again.forget_feedback(path=pets / "dog-sofa.jpg") == 1 and len(again.feedback_marks()) == 1
    assert again.forget_feedback() == 1
    assert names(again.search("a dog lying on a couch", k=5)) == before


def test_a_library_without_marks_is_not_asked_for_them_at_every_query(make_engine, pets, monkeypatch):
    from chromadb.api.client import Client

    from mmsearch.store import collections

    engine = make_engine(caption_weight=1.0, keyword_weight=0.0)
    engine.index([pets])
    asked, get = [], Client.get_collection
    monkeypatch.setattr(Client, "get_collection", lambda self, name, **kw: asked.append(name) or get(self, name, **kw))
    for query in ("a dog lying on a couch", "a red car", "a cat"):
        engine.search(query, k=5)
    feedback = engine.store.name("feedback")
    assert asked.count(feedback) == 1  # a miss is taken as still missing for a few seconds (on a server, a round trip)
    other = make_engine(caption_weight=1.0, keyword_weight=0.0)  # another process marks a photo
    other.feedback("a dog on a couch", pets / "dog-snow.jpg", relevant=True)
    monkeypatch.setattr(collections, "MISSING_RECHECK", 0.0)  # those seconds have passed
    hits = engine.search("a dog lying on a couch", k=5)
    assert names(hits)[0] == "dog-snow.jpg" and hits[0].scores["feedback"] > 0


def test_feedback_signal_weighs_similarity_and_age():
    now = 1_000_000_000.0
    found = [({"image_id": "a", "sign": 1, "time": now}, 0.95), ({"image_id": "a", "sign": 1, "time": now - 180 * 86400}, 0.9),
             ({"image_id": "b", "sign": -1, "time": now}, 0.85), ({"image_id": "c", "sign": 1, "time": now}, 0.5)]
    scores = feedback_scores(found, now)
    assert scores["a"] == pytest.approx(0.95 + 0.45) and scores["b"] == pytest.approx(-0.85) and "c" not in scores


def test_a_feedback_store_that_cannot_be_read_never_fails_a_search(make_engine, pets, caplog, monkeypatch):
    engine = make_engine(caption_weight=1.0)
    engine.index([pets])
    engine.feedback("a dog", pets / "dog-snow.jpg", relevant=True)

    def broken(*args, **kwargs):
        raise RuntimeError("Error loading hnsw index")

    monkeypatch.setattr(type(engine.marks.records), "near", broken)
    assert len(engine.search("a dog", k=3)) == 3 and len(engine.search("a dog", k=3)) == 3
    assert caplog.text.count("feedback marks cannot be read") == 1  # one line, once


def test_cli_like_unlike_and_feedback_commands(tiny_env, pets, capsys):
    assert main(["index", str(pets)]) == 0
    assert main(["search", "a dog", "-k", "5", "--like", str(pets / "dog-snow.jpg"), "--unlike", str(pets / "car.jpg"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["feedback", "list"]) == 0
    listed = capsys.readouterr().out
    assert "like    'a dog'" in listed and "unlike  'a dog'" in listed and listed.strip().endswith("2 marks")
    assert main(["feedback", "export"]) == 0
    assert '"relevant": true' in capsys.readouterr().out
    assert main(["feedback", "clear", "--query", "a dog"]) == 0
    assert capsys.readouterr().out.strip() == "removed 2 marks"
    assert SearchEngine(str(tiny_env)).feedback_marks() == []


@pytest.fixture
def pet_page(make_engine, pets):
    from helpers import served

    engine = make_engine(caption_weight=1.0, keyword_weight=0.0)
    engine.index([pets])
    with served(engine) as url:
        yield {"url": url, "engine": engine, "pets": pets}


@pytest.mark.slow
@pytest.mark.server
def test_the_api_takes_marks_and_opening_full_size_is_a_weak_like(pet_page):
    import urllib.request

    from gradio_client import Client

    from mmsearch.ids import image_id
    from mmsearch.search.feedback import OPENED

    client = Client(pet_page["url"], verbose=False)
    _, plain, _ = client.predict("a dog", k=5, min_relevance=0, api_name="/search")
    first = plain[0]["file"]
    _, refined, _ = client.predict("a dog", k=5, min_relevance=0, like=[], unlike=[first], api_name="/search")
    assert refined[-1]["file"] == first and refined[0]["file"] != first
    sofa = str(pet_page["pets"] / "dog-sofa.jpg")
    with urllib.request.urlopen(f"{pet_page['url']}mmsearch/original/{image_id(sofa)}?q=a%20sleepy%20dog") as response:
        assert response.status == 200
    marks = pet_page["engine"].feedback_marks()
    assert [(m.query, Path(m.path).name, m.relevant) for m in marks] == [("a sleepy dog", "dog-sofa.jpg", True)]
    stored = pet_page["engine"].marks.records.all()[0]
    assert stored["sign"] == pytest.approx(OPENED)


@pytest.mark.slow
@pytest.mark.server
def test_mark_a_hit_in_the_page_and_refine(pet_page, tmp_path):
    import os
    import shutil

    from playwright.sync_api import expect, sync_playwright

    chromium = "/usr/bin/chromium"
    if not shutil.which(chromium) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(pet_page["url"])
        floor = page.locator("#min-relevance input[type=number]")  # random weights: show the nearest, however weak
        floor.fill("0")
        floor.press("Enter")
        page.locator("#query textarea").fill("a dog")
        page.locator("#search-button").click()
        expect(page.locator("#status")).to_contain_text("results")
        first = page.locator("#gallery .caption-label").first.inner_text().split(" · ")[0]
        second = page.locator("#gallery .caption-label").nth(1).inner_text().split(" · ")[0]
        page.locator("#gallery .thumbnail-item .mm-like").nth(1).click()  # one click on the tile itself
        expect(page.locator("#marks")).to_contain_text(f"relevant: {second.split('/')[-1]}")
        expect(page.locator("#details")).to_have_count(0)  # the tile's mark did not open the larger view
        page.locator("#gallery button.thumbnail-item").first.click()
        page.locator("#mark-unlike").click()  # and from the larger view
        expect(page.locator("#marks")).to_contain_text("not relevant")
        page.locator("#refine").click()
        expect(page.locator("#gallery .caption-label").first).not_to_contain_text(first)
        labels = page.locator("#gallery .caption-label").all_inner_texts()
        assert labels[-1].split(" · ")[0] == first  # the unliked hit now ranks last
        page.screenshot(path=str(tmp_path / "marks.png"), full_page=True)
        browser.close()
    assert sorted(m.relevant for m in pet_page["engine"].feedback_marks()) == [False, True]  # remembered (the default)


def test_eval_feedback_simulates_rounds_and_a_returning_user_and_leaves_no_marks(make_engine, pets, tmp_path):
    from mmsearch.evaluation import evaluate_feedback, load_dataset

    rows = ["path,caption", "dog-beach.jpg,a dog by the sea", "dog-beach.jpg,a puppy at the seaside",
            "dog-snow.jpg,a dog in winter", "dog-snow.jpg,a puppy in the snow", "cat.jpg,a kitten by a window"]
    (tmp_path / "queries.csv").write_text("\n".join(rows) + "\n")
    engine = make_engine(caption_weight=1.0, keyword_weight=0.0)
    engine.index([pets])
    engine.feedback("an unrelated earlier query", pets / "car.jpg", relevant=True)  # a user's own mark
    result = evaluate_feedback(engine, load_dataset(tmp_path / "queries.csv", pets))
    rounds = result["rounds"]
    assert set(rounds) == {"0", "1", "2"} and rounds["1"]["R@1"] >= rounds["0"]["R@1"]
    assert rounds["2"]["R@1"] == 100.0  # every right photo was on the first page here, and got marked
    assert result["returning"]["pairs"] == 2
    assert result["returning"]["with_marks"]["R@1"] >= result["returning"]["without_marks"]["R@1"]
    assert [m.query for m in engine.feedback_marks()] == ["an unrelated earlier query"]  # only its own marks went
