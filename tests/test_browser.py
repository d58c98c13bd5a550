"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

import pytest
from helpers import launch_site, served

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.server]  # make test runs them

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TIMEOUT = 60_000  # ms; the first query of a session also warms the models up

if not shutil.which(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); CI installs it", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(site["url"])
    yield page
    page.close()


def tiles(page) -> list[str]:
    return page.locator("#gallery .caption-label").all_inner_texts()


def search(page, query: str, answer: str = "result") -> None:
    from playwright.sync_api import expect

    page.locator("#query textarea").fill(query)
    page.locator("#search-button").click()
    expect(page.locator("#status")).to_contain_text(answer, timeout=TIMEOUT)


def duplicates_page(browser, url: str):
    """A page of ``url`` with the Duplicates panel open and its groups asked for."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    page.get_by_text("Duplicates", exact=True).click()
    page.locator("#duplicates-button").click()
    return page


def show_all(page) -> None:
    """The relevance floor at 0: the nearest hits, however weak (random-weight models match nothing)."""
    box = page.locator("#min-relevance input[type=number]")
    box.fill("0")
    box.press("Enter")


def test_type_a_query_see_the_gallery_open_a_hit_and_ask_for_more_like_it(page, site, tmp_path):
    from playwright.sync_api import expect

    search(page, "xyzzyqwerty", answer="No close matches for 'xyzzyqwerty'")
    assert tiles(page) == []  # no gallery of filler
    search(page, "a kitten napping on the couch")
    first = page.locator("#gallery .caption-label").first
    expect(first).to_contain_text("black_cat.jpg")
    assert tiles(page)[0].startswith("photos/black_cat.jpg · strong match")  # only the close match
    show_all(page)
    search(page, "a kitten napping on the couch")
    expect(page.locator("#status")).to_have_text("7 results")
    assert len(tiles(page)) == 7 and "a black cat sleeping on a sofa" in tiles(page)[0]
    assert all("weak" in t for t in tiles(page)[1:])
    src = page.locator("#gallery img").first.get_attribute("src") or ""
    assert "/gradio_api/file=" in src and not src.endswith("black_cat.jpg")  # a thumbnail, not the original
    served_from = urllib.parse.unquote(src.split("/gradio_api/file=", 1)[1])
    thumbnails = str(Path(site["engine"].config.thumbnail_dir).absolute())
    assert served_from.startswith(thumbnails + "/"), served_from  # from where it is: no copy per search

    page.locator("#gallery button.thumbnail-item").first.click()
    expect(page.locator("#details")).to_contain_text("black_cat.jpg")
    expect(page.locator("#details")).to_contain_text("a black cat sleeping on a sofa")
    expect(page.locator("#preview img")).to_be_visible()
    page.screenshot(path=str(tmp_path / "hit.png"), full_page=True)

    page.locator("#more-like-this").click()
    expect(page.locator("#status")).to_contain_text("results like black_cat.jpg")
    assert not any(t.startswith("photos/black_cat.jpg") for t in tiles(page))
    assert (tmp_path / "hit.png").stat().st_size > 10_000


def test_upload_an_image_then_filter_by_folder(page, site, tmp_path):
    from playwright.sync_api import expect

    show_all(page)  # random weights: an image and its own upload are no match to speak of
    page.locator("#query-image input[type=file]").set_input_files(str(site["photos"] / "red_bicycle.png"))
    expect(page.locator("#query-image img")).to_be_visible()
    page.locator("#search-button").click()
    expect(page.locator("#gallery .caption-label").first).to_contain_text("red_bicycle.png", timeout=TIMEOUT)
    page.locator("#gallery button.thumbnail-item").first.click()
    expect(page.locator("#details")).to_contain_text("image 1.000")  # the raw signals: in the details, not on tiles

    page.reload()
    show_all(page)
    holidays = str(site["photos"] / "holidays")
    folder = page.locator("#folder-filter input")
    folder.fill(holidays)
    folder.press("Enter")
    search(page, "a plate of spaghetti")
    expect(page.locator("#status")).to_have_text("3 results")
    assert sorted(t.split(" · ")[0] for t in tiles(page)) == ["holidays/beach.jpg", "holidays/mountain.png",
                                                             "holidays/uncaptioned.jpg"]
    page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)
    assert (tmp_path / "filtered.png").stat().st_size > 10_000


def test_a_non_image_upload_is_answered_with_a_message(page, site):
    from playwright.sync_api import expect

    fake = site["base"] / "holiday.png"
    fake.write_text("a text file with an image name")
    page.locator("#query-image input[type=file]").set_input_files(str(fake))
    page.locator("#search-button").click()
    expect(page.get_by_text("holiday.png is not an image mmsearch can read").first).to_be_visible()
    assert "Traceback" not in page.content()


def test_the_index_panel_shows_the_models_and_indexes_a_folder(page, site):
    from helpers import save_image
    from playwright.sync_api import expect

    page.get_by_text("Index", exact=True).click()
    expect(page.locator("#index-facts")).to_contain_text("images")
    expect(page.locator("#index-facts")).to_contain_text("open_clip:mmsearch-tiny")
    new = Path(site["base"]) / "more"
    for i in range(3):
        save_image(new / f"blue_{i}.png", (20, 40, 200 - 20 * i))
    page.locator("#index-folder textarea").fill(str(new))
    page.locator("#index-button").click()
    expect(page.locator("#index-outcome")).to_contain_text("added 3", timeout=TIMEOUT)
    expect(page.locator("#index-facts")).to_contain_text(str(new))


@pytest.fixture(scope="module")
def icon_site(tmp_path_factory):
    """An offline-profile page over icons: transparent, small, one name in several folders."""
    from PIL import Image, ImageDraw

    from mmsearch import Config, SearchEngine

    base = tmp_path_factory.mktemp("icons")
    for size in (16, 48):
        icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        ImageDraw.Draw(icon).ellipse((1, 1, size - 2, size - 2), fill=(200, 120, 30, 255))
        (base / "theme" / f"{size}x{size}" / "apps").mkdir(parents=True)
        icon.save(base / "theme" / f"{size}x{size}" / "apps" / "face-monkey.png")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(base / "db"))))
    engine.index([base / "theme"])
    with served(engine) as url:
        yield {"url": url, "base": base}


def test_icons_are_shown_whole_at_their_size_with_transparency_and_told_apart(browser, icon_site, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(icon_site["url"])
    assert "English" in page.locator("#query textarea").get_attribute("placeholder") + page.locator("#query").inner_text()
    assert "一只猫" not in (page.locator("#query textarea").get_attribute("placeholder") or "")
    search(page, "face-monkey.png")
    labels = tiles(page)
    assert sorted(label.split(" · ")[0] for label in labels) == ["16x16/apps/face-monkey.png", "48x48/apps/face-monkey.png"]
    assert all(" · strong match 1.00" in label for label in labels)  # pinned: the top of the scale
    images = page.locator("#gallery .thumbnail-item img")
    # the tiles are in the page before their pictures have loaded: wait for every one to load (or fail)
    page.wait_for_function("() => [...document.querySelectorAll('#gallery .thumbnail-item img')]"
                           ".every(i => i.complete)")
    for n in range(images.count()):
        natural, fit = images.nth(n).evaluate("i => [i.naturalWidth, getComputedStyle(i).objectFit]")
        assert natural in (16, 48) and fit == "scale-down"  # drawn at most at its own size, whole
        assert images.nth(n).get_attribute("src").split("?")[0].endswith(".png")  # alpha kept
    page.screenshot(path=str(tmp_path / "icons.png"), full_page=True)
    page.locator("#gallery button.thumbnail-item").first.click()
    expect(page.locator("#preview img")).to_be_visible()
    assert page.locator("#preview").bounding_box()["height"] < 300  # a small panel for a small icon
    folder = page.locator("#folder-filter input")
    folder.fill(str(icon_site["base"] / "theme"))
    folder.press("Enter")
    theme = str(icon_site["base"] / "theme")
    assert page.locator("#folder-filter input").input_value() in (theme, f"{theme} (2)")  # what was typed, no other
    search(page, "face-monkey.png")
    expect(page.locator("#status")).to_have_text("2 results")
    page.close()


def test_the_duplicates_panel_shows_groups_with_their_keeper(browser, tmp_path):
    import shutil

    from PIL import Image
    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    (tmp_path / "lib" / "backup").mkdir(parents=True)
    shutil.copy(samples / "rocket.jpg", tmp_path / "lib" / "rocket.jpg")
    with Image.open(samples / "rocket.jpg") as rocket:
        rocket.resize((rocket.width // 2, rocket.height // 2)).save(tmp_path / "lib" / "backup" / "rocket-small.jpg")
    shutil.copy(samples / "coffee.png", tmp_path / "lib" / "coffee.png")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([tmp_path / "lib"])
    with served(engine, read_only=True) as url:
        page = duplicates_page(browser, url)
        expect(page.locator("#duplicates-summary")).to_contain_text("1 groups")
        labels = page.locator("#duplicates-gallery .caption-label").all_inner_texts()
        assert len(labels) == 2 and labels[0].startswith("group 1 · KEEP") and "rocket-small.jpg" in labels[1]
        assert not page.locator("#duplicates-move").is_visible()  # read-only: no moves offered
        page.screenshot(path=str(tmp_path / "duplicates.png"), full_page=True)
        page.close()


def test_a_move_of_duplicates_is_asked_for_and_undone_in_the_page(browser, tmp_path):
    import shutil

    from PIL import Image
    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    library = tmp_path / "lib"
    (library / "backup").mkdir(parents=True)
    for name in ("rocket.jpg", "coffee.png"):
        shutil.copy(samples / name, library / name)
    with Image.open(samples / "rocket.jpg") as rocket:
        rocket.resize((rocket.width // 2, rocket.height // 2)).save(library / "backup" / "rocket-small.jpg", quality=40)
    shutil.copy(samples / "coffee.png", library / "backup" / "coffee-copy.png")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([library])
    with served(engine) as url:
        page = duplicates_page(browser, url)
        expect(page.locator("#duplicates-summary")).to_contain_text("2 groups")
        expect(page.locator("#duplicates-which input")).to_have_value("group 1")  # the group in view, not all
        page.locator("#duplicates-gallery button.thumbnail-item").nth(3).click()  # a tile of group 2
        expect(page.locator("#duplicates-which input")).to_have_value("group 2")
        page.locator("#duplicates-dest textarea").fill(str(tmp_path / "moved"))
        page.locator("#duplicates-move").click()
        expect(page.locator("#duplicates-question")).to_contain_text("Move 1 file of 1 group to")
        expect(page.locator("#duplicates-question")).to_contain_text("This can be undone")
        assert len(list(library.rglob("*.*"))) == 4  # asked, not moved
        page.screenshot(path=str(tmp_path / "asked.png"), full_page=True)
        page.locator("#duplicates-confirm").click()
        expect(page.locator("#duplicates-outcome")).to_contain_text("Moved 1 file to")
        assert len(list(library.rglob("*.*"))) == 3 and len(list((tmp_path / "moved").rglob("*.*"))) == 2  # + manifest
        page.locator("#duplicates-undo").click()
        expect(page.locator("#duplicates-outcome")).to_contain_text("Moved 1 file back")
        assert len(list(library.rglob("*.*"))) == 4
        expect(page.locator("#duplicates-undo")).to_be_hidden()
        page.close()


@pytest.fixture(scope="module")
def sign_site(tmp_path_factory, tiny_config, tiny_encoders):
    yield from launch_site(tmp_path_factory.mktemp("browser-ocr"), tiny_config, tiny_encoders,
                           signs={"gate.jpg": ["GATE B42 BOARDING"]})


def test_text_read_in_a_photo_finds_it_and_shows_in_its_details(browser, sign_site, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(sign_site["url"])
    search(page, "B42")
    expect(page.locator("#gallery .caption-label").first).to_contain_text("gate.jpg")
    page.locator("#gallery button.thumbnail-item").first.click()
    details = page.locator("#details")
    expect(details).to_contain_text("Text in photo")
    expect(details).to_contain_text("B42")
    expect(details).to_contain_text("ocr 1.000")
    page.screenshot(path=str(tmp_path / "ocr.png"), full_page=True)
    page.close()


def test_a_reloaded_page_shows_the_models_a_reindex_switched_to(browser, tmp_path, tiny_clip):
    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    db = tmp_path / "db"
    photos = Path(__file__).resolve().parent.parent / "sample_images"
    SearchEngine(config=Config.offline_profile(Config.from_env(db=str(db)))).index([photos])
    engine = SearchEngine(db)
    with served(engine) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        expect(page.locator("#profile")).to_contain_text("Offline profile")
        assert not page.locator("#query-image").is_visible()  # no image model: no image queries
        SearchEngine(db, clip_model=tiny_clip[0], clip_pretrained=tiny_clip[1], text_model="clip").reindex()
        assert engine.follow_switch()  # what the server's watcher does within 2 s
        page.reload()
        expect(page.locator("#profile")).to_contain_text("Image search: pictures and captions")
        expect(page.locator("#query-image")).to_be_visible()
        page.get_by_text("Index", exact=True).first.click()  # the accordion with the index facts
        expect(page.locator("#index-facts")).to_contain_text("previous models kept")
        page.close()


def test_a_login_opens_the_page_and_its_live_routes(browser, tmp_path):
    import shutil

    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    (tmp_path / "lib").mkdir()
    for name in ("rocket.jpg", "coffee.png", "chelsea-cat.png"):
        shutil.copy(samples / name, tmp_path / "lib" / name)
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([tmp_path / "lib"])
    with served(engine, auth=[("ann", "s3cret")]) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        statuses: dict[str, list[int]] = {}
        page.on("response", lambda r: statuses.setdefault(r.url.split("?")[0].rsplit("/", 2)[-2], []).append(r.status))
        page.goto(url)
        assert not page.locator("#query").count()  # the login form, not the page
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.get_by_label("username").fill("ann")  # the form is cleared after a failed login
        page.get_by_label("password").fill("s3cret")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#query")).to_be_visible()
        search(page, "a cat")
        assert any("chelsea-cat" in label for label in tiles(page))
        page.screenshot(path=str(tmp_path / "logged-in.png"), full_page=True)
        # The page's own streams answer the logged-in browser (the gate only stops those without a login).
        live = [s for route in ("heartbeat", "queue") for s in statuses.get(route, [])]
        assert statuses.get("heartbeat") == [200]
        assert live and all(s == 200 for s in live), statuses
        page.close()


def test_the_current_search_is_saved_as_an_album_and_shown_with_its_new_photos(browser, tmp_path):
    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    root = tmp_path / "lib"
    root.mkdir()
    from helpers import scene_picture

    for n, caption in enumerate(["a tabby cat asleep on a sofa", "a black cat on a wall", "a red bicycle"]):
        scene_picture(n, (160, 120)).save(root / f"p{n}.jpg")
        (root / f"p{n}.jpg.txt").write_text(caption)
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([root])
    with served(engine) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        search(page, "a cat")
        page.get_by_text("Albums", exact=True).click()
        page.locator("#album-name textarea").fill("Cats")
        page.locator("#album-save").click()
        expect(page.locator("#album-summary")).to_contain_text("Cats: 2 photos, 2 new since you last looked")
        labels = page.locator("#album-gallery .caption-label").all_inner_texts()
        assert len(labels) == 2 and all(label.startswith("NEW · p") for label in labels), labels
        page.screenshot(path=str(tmp_path / "albums.png"), full_page=True)
        page.close()
    assert [a.name for a in engine.albums] == ["Cats"] and len(engine.albums[0].photos) == 2


def test_what_a_query_was_understood_as_shows_as_chips_and_unticking_one_searches_without_it(browser, tmp_path):
    from helpers import scene_picture
    from playwright.sync_api import expect
    from test_places import SHOTS, gps_exif

    from mmsearch import Config, SearchEngine

    root = tmp_path / "trips"
    root.mkdir()
    for n, (name, (lat, lon, taken)) in enumerate(SHOTS.items()):
        scene_picture(100 + n, (160, 120)).save(root / name, exif=gps_exif(lat, lon, taken))
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([root])
    with served(engine) as url:
        page = browser.new_page(viewport={"width": 390, "height": 900})
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        search(page, "Osaka 2019", "1 result")
        chips = page.locator("#understood")
        expect(chips).to_be_visible()
        assert chips.get_by_label("place Osaka, Japan").is_checked() and chips.get_by_label("year 2019").is_checked()
        chips.get_by_label("year 2019").uncheck()
        expect(page.locator("#status")).to_contain_text("2 results")
        assert page.locator("#query textarea").input_value() == "Osaka"
        assert tiles(page) and all(label.split(" · ")[0].endswith(("c.jpg", "d.jpg")) for label in tiles(page))
        page.screenshot(path=str(tmp_path / "chips.png"), full_page=True)
        page.close()


def test_text_from_a_photo_renders_literally_and_the_marks_use_no_emoji(browser, tmp_path):
    import shutil

    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine
    from mmsearch.ids import image_id

    samples = Path(__file__).resolve().parent.parent / "sample_images"
    (tmp_path / "lib").mkdir()
    shutil.copy(samples / "rocket.jpg", tmp_path / "lib" / "rocket.jpg")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([tmp_path / "lib"])
    read = "nodejs-foundation *bold* _under_ see https://example.org/a_b"
    engine.store.set_metadata({image_id(str(tmp_path / "lib" / "rocket.jpg")): {"ocr": read, "ocr_confidence": 0.9}})
    with served(engine) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        search(page, "rocket.jpg")
        page.locator("#gallery button.thumbnail-item").first.click()
        text = page.locator("#details .ocr-text")
        expect(text).to_have_text(read)  # no markdown: no bold, no escapes, no link
        assert text.locator("a, strong, em").count() == 0
        assert page.locator("#mark-like").inner_text() == "✓ Relevant"
        assert page.locator("#mark-unlike").inner_text() == "✗ Not relevant"
        page.close()


def test_a_click_on_a_tile_brings_its_larger_view_into_the_window(browser, site, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 390, "height": 800})  # a phone: the view opens screens below
    page.set_default_timeout(TIMEOUT)
    page.goto(site["url"])
    expect(page.locator("#min-relevance")).to_be_hidden()  # the filters start folded on a phone
    page.get_by_text("Results and filters").click()
    show_all(page)
    search(page, "a kitten napping on the couch")
    page.locator("#gallery button.thumbnail-item").last.click()
    details = page.locator("#details")
    expect(details).to_contain_text("File")
    page.wait_for_function("() => { const r = document.querySelector('#details').getBoundingClientRect();"
                           " return r.top >= 0 && r.top < window.innerHeight - 100; }")
    box = details.bounding_box()
    assert box is not None and 0 <= box["y"] < 800 - 100, box
    page.screenshot(path=str(tmp_path / "details-in-view.png"))
    page.close()


def test_on_a_phone_the_filters_start_folded_and_the_query_comes_first(browser, site):
    from playwright.sync_api import expect

    for width, folded in ((390, True), (1280, False)):
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.set_default_timeout(TIMEOUT)
        page.goto(site["url"])
        expect(page.locator("#query textarea")).to_be_visible()
        results = page.locator("#min-relevance")
        if folded:
            expect(results).to_be_hidden()
        else:
            expect(results).to_be_visible()
        box = page.locator("#query textarea").bounding_box()
        assert box is not None and box["y"] < 800
        page.close()


@pytest.fixture(scope="module")
def grid_site(tmp_path_factory):
    """An offline-profile page over 30 photos in deep folders with long names: one query finds them all."""
    from PIL import Image

    from mmsearch import Config, SearchEngine

    base = tmp_path_factory.mktemp("grid")
    for n in range(30):
        folder = base / "library" / "2024" / f"trip-to-the-mountains-{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320 + 40 * (n % 4), 240), (8 * n, 255 - 8 * n, 120)).save(
            folder / f"holiday-snapshot-with-a-rather-long-name-{n:02d}.png")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(base / "db"))))
    engine.index([base / "library"])
    with served(engine) as url:
        yield {"url": url, "base": base}


# Everything a tile's marks could collide with: whether each mark is in its tile, is the element under its own
# centre (nothing covers it), overlaps no other control or label, and how much of the picture the marks cover.
LAYOUT_JS = """() => {
  const inside = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5
    && a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5;
  const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
    && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const shown = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const kinds = 'button, input, textarea, select, label, .mm-label, .mm-tile-marks';
  const controls = [...document.querySelectorAll(kinds)].filter(shown);
  const problems = [], covered = [];
  document.querySelectorAll('#gallery .thumbnail-item').forEach((tile, n) => {
    const bar = tile.querySelector('.mm-tile-marks');
    if (!bar) { problems.push(`tile ${n} has no marks`); return; }
    const t = tile.getBoundingClientRect(), m = bar.getBoundingClientRect();
    if (!inside(m, t)) problems.push(`the marks of tile ${n} leave it`);
    covered.push(m.width * m.height / (t.width * t.height));
    for (const other of controls) {
      if (other === tile || other === bar || tile.contains(other) || other.contains(tile)) continue;
      if (overlap(m, other.getBoundingClientRect()))
        problems.push(`the marks of tile ${n} overlap ${other.tagName}.${other.className}`);
    }
    for (const mark of bar.children) {
      const r = mark.getBoundingClientRect(), x = (r.left + r.right) / 2, y = (r.top + r.bottom) / 2;
      if (y < 0 || y > innerHeight) continue;
      const top = document.elementFromPoint(x, y);
      if (top !== mark && !mark.contains(top))
        problems.push(`the ${mark.title} mark of tile ${n} is covered by ${top && top.tagName}.${top && top.className}`);
    }
  });
  const tiles = [...document.querySelectorAll('#gallery .gallery-item')].map(e => e.getBoundingClientRect());
  const wrap = document.querySelector('#gallery .grid-wrap');
  return {problems, covered: Math.max(...covered),
          rows: new Set(tiles.filter(r => r.top >= 0 && r.bottom <= innerHeight).map(r => Math.round(r.top))).size,
          columns: new Set(tiles.map(r => Math.round(r.left))).size,
          inner_scroll: wrap.scrollHeight - wrap.clientHeight};
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_the_gallery_fits_the_screen_and_nothing_covers_the_marks(browser, grid_site, tmp_path, width):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": 800})
    page.set_default_timeout(TIMEOUT)
    page.goto(grid_site["url"])
    if width < 700:
        page.get_by_text("Results and filters").click()  # folded on a phone
    count = page.locator("#side-column input[type=number]").first
    count.fill("24")
    count.press("Enter")
    search(page, "holiday snapshot", answer="24 results")
    expect(page.locator("#gallery .mm-label")).to_have_count(24)
    page.evaluate("() => window.scrollTo(0, 0)")
    shots = Path(os.environ.get("MMSEARCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"gallery-{width}.png"))
    layout = page.evaluate(LAYOUT_JS)
    assert layout["problems"] == [], layout["problems"][:5]
    assert layout["inner_scroll"] <= 1, layout  # the gallery grows with its tiles: no scrolling inside it
    if width == 1280:
        assert layout["rows"] >= 3 and layout["columns"] >= 5, layout  # three whole rows on a laptop's screen
    else:
        assert layout["columns"] == 2 and layout["covered"] < 0.12, layout  # the marks leave the picture visible
    query = page.locator("#query textarea").bounding_box()
    first = page.locator("#gallery .gallery-item").first.bounding_box()
    filters = page.locator("#filters").bounding_box()
    assert query["y"] < first["y"] < 800, (query, first)  # the query, then the results, on the first screen
    if width < 700:
        assert filters["y"] > first["y"], (first, filters)  # the filters after the results on a phone
    # Two lines under each tile: the name with its end kept, then how well it matches.
    lines = page.locator("#gallery .mm-label").first.evaluate(
        "b => [...b.children].map(d => [d.textContent, d.getBoundingClientRect().height, d.scrollWidth > d.clientWidth])")
    assert [text for text, _, _ in lines][1].startswith("strong match"), lines
    assert lines[0][0].endswith(".png") and all(height < 24 for _, height, _ in lines), lines
    assert page.locator("#gallery .mm-label").first.get_attribute("title") == tiles(page)[0]  # the whole caption
    # A click on a tile of the last row opens its larger view in the window.
    page.locator("#gallery .mm-label").nth(23).click()
    expect(page.locator("#details")).to_contain_text("File")
    page.wait_for_function("() => { const r = document.querySelector('#details').getBoundingClientRect();"
                           " return r.top >= 0 && r.top < window.innerHeight - 100; }")
    page.screenshot(path=str(shots / f"details-{width}.png"))
    page.close()


def test_the_duplicates_panel_pages_through_its_groups(browser, tmp_path):
    import numpy as np
    from mmsearch_web.duplicates_panel import SHOWN_TILES
    from PIL import Image
    from playwright.sync_api import expect

    from mmsearch import Config, SearchEngine

    library, rng = tmp_path / "lib", np.random.default_rng(7)
    (library / "copies").mkdir(parents=True)
    groups = SHOWN_TILES // 2 + 6  # pairs: more tiles than one page holds
    for n in range(groups):
        noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256), Image.NEAREST)
        noise.save(library / f"photo-{n:02d}.png")
        noise.save(library / "copies" / f"photo-{n:02d}.png")
    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    engine.index([library])
    with served(engine) as url:
        page = duplicates_page(browser, url)
        expect(page.locator("#duplicates-summary")).to_contain_text(f"{groups} groups")
        where = page.locator("#duplicates-page")
        expect(where).to_contain_text(f"groups 1–{SHOWN_TILES // 2} of {groups} (page 1 of 2)")
        assert page.locator("#duplicates-gallery .thumbnail-item").count() == SHOWN_TILES
        page.locator("#duplicates-later").click()
        expect(where).to_contain_text(f"groups {SHOWN_TILES // 2 + 1}–{groups} of {groups} (page 2 of 2)")
        expect(page.locator("#duplicates-gallery .thumbnail-item")).to_have_count(12)
        first = page.locator("#duplicates-gallery .caption-label").first
        expect(first).to_contain_text(f"group {SHOWN_TILES // 2 + 1} · KEEP")
        page.locator("#duplicates-gallery button.thumbnail-item").nth(3).click()  # the second group of this page
        expect(page.locator("#duplicates-which input")).to_have_value(f"group {SHOWN_TILES // 2 + 2}")
        page.locator("#duplicates-earlier").click()
        expect(where).to_contain_text("(page 1 of 2)")
        page.close()
