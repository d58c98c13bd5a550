"""Where and when: places from GPS in every language, a radius filter, dates and places typed in the query,
negation, and a timeline. Photos are generated with EXIF GPS and dates, neutral names and no captions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import count_encoder_calls, scene_picture

from mmsearch import Config, SearchEngine
from mmsearch.cli import main
from mmsearch.errors import QueryError
from mmsearch.media.places import locate
from mmsearch.search.filters import within

# name: (lat, lon, date taken)
SHOTS = {
    "a.jpg": (38.7139, -9.1394, "2019:06:01 10:00:00"),   # Lisbon
    "b.jpg": (38.7223, -9.1600, "2021:08:15 18:30:00"),   # Lisbon
    "c.jpg": (34.6937, 135.5023, "2019:04:05 09:00:00"),  # Osaka
    "d.jpg": (34.7025, 135.4959, "2021:03:01 12:00:00"),  # Osaka
    "e.jpg": (-1.2921, 36.8219, "2018:04:20 08:00:00"),   # Nairobi
    "f.jpg": (-33.8688, 151.2093, "2020:01:01 00:10:00"),  # Sydney
    "g.jpg": (64.1466, -21.9426, "2017:07:07 07:07:07"),  # Reykjavik
    "h.jpg": (-16.5000, 179.9000, "2016:02:02 12:00:00"),  # Fiji, by the antimeridian
    "i.jpg": (-16.4000, -179.9500, "2016:02:03 12:00:00"),  # Fiji, across it
    "j.jpg": (78.2232, 15.6267, "2015:05:05 05:05:05"),   # Longyearbyen, near the pole
}


def gps_exif(lat: float, lon: float, taken: str, rationals: tuple | None = None) -> bytes:
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    def dms(value: float) -> tuple:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round(((value - degrees) * 60 - minutes) * 60, 4)
        return (IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(int(seconds * 10000), 10000))

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: rationals or dms(lat), 3: "E" if lon >= 0 else "W",
                    4: rationals or dms(lon)}
    return exif.tobytes()


@pytest.fixture
def trips(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for n, (name, (lat, lon, taken)) in enumerate(SHOTS.items()):
        scene_picture(100 + n, (96, 72)).save(root / name, exif=gps_exif(lat, lon, taken))
    scene_picture(1, (96, 72)).save(root / "nogps.jpg")
    from PIL.TiffImagePlugin import IFDRational
    scene_picture(2, (96, 72)).save(root / "zero.jpg", exif=gps_exif(0.0, 0.0, "2019:01:01 00:00:00"))
    bad = (IFDRational(1, 0), IFDRational(0, 0), IFDRational(5, 0))
    scene_picture(3, (96, 72)).save(root / "bad.jpg", exif=gps_exif(1.0, 1.0, "2019:01:01 00:00:00", bad))
    return root


def _offline(db: Path) -> SearchEngine:
    return SearchEngine(config=Config.offline_profile(Config(db=str(db))))


def _names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_gps_becomes_a_place_in_every_language_and_photos_without_one_are_untouched(trips, tmp_path):
    engine = _offline(tmp_path / "db")
    report = engine.index([trips])
    assert report.added == 13 and report.failed == []
    assert [(Path(p).name, w) for p, w in report.warnings] == [
        ("bad.jpg", "GPS: the position in the EXIF data is not a valid one; the photo is indexed without a place")]
    metas = {m["name"]: m for _, m in engine.store.all_metadata()}
    assert metas["e.jpg"]["place"] == "Nairobi, Nairobi County, Kenya"
    assert metas["a.jpg"]["place"] == "Lisbon, Portugal" and metas["c.jpg"]["place"].startswith("Osaka")
    assert "里斯本" in metas["a.jpg"]["place_city"] and "大阪" in metas["c.jpg"]["place_city"]
    assert "ポルトガル" in metas["a.jpg"]["place_country"] and "葡萄牙" in metas["a.jpg"]["place_country"]
    for name in ("nogps.jpg", "zero.jpg", "bad.jpg"):
        assert not any(k.startswith(("lat", "lon", "place")) for k in metas[name]), name
    hit = engine.search("Nairobi", k=1)[0]
    assert hit.metadata["place"] == "Nairobi, Nairobi County, Kenya"


@pytest.mark.parametrize("typed, expected", [
    ("Lisbon", {"a.jpg", "b.jpg"}), ("Portugal", {"a.jpg", "b.jpg"}), ("里斯本", {"a.jpg", "b.jpg"}),
    ("リスボン", {"a.jpg", "b.jpg"}), ("大阪", {"c.jpg", "d.jpg"}), ("Japan", {"c.jpg", "d.jpg"}),
    ("日本", {"c.jpg", "d.jpg"}), ("内罗毕", {"e.jpg"}), ("Kenya", {"e.jpg"}), ("in Lisbon", {"a.jpg", "b.jpg"}),
])
def test_places_are_found_by_city_country_and_their_names_in_other_scripts(trips, tmp_path, typed, expected):
    engine = _offline(tmp_path / "db")
    engine.index([trips])
    hits = engine.search(typed, k=20, min_relevance=0.5)
    assert set(_names(hits)) == expected
    assert set(_names(engine.search("photo", place=typed.removeprefix("in "), k=20))) <= expected


def test_a_place_and_a_year_list_those_photos_newest_first_and_dates_cut(trips, tmp_path, capsys):
    engine = _offline(tmp_path / "db")
    engine.index([trips])
    assert _names(engine.search("Osaka 2019", k=10, min_relevance=0.5)) == ["c.jpg"]
    assert _names(engine.search("Osaka", k=10, min_relevance=0.5)) == ["d.jpg", "c.jpg"]  # newest first
    assert _names(engine.search("Lisbon", k=10, date_from="2021-01-01", min_relevance=0.5)) == ["b.jpg"]
    assert _names(engine.search("Lisbon after:2020", k=10)) == ["b.jpg"]
    assert _names(engine.search("April 2018", k=10)) == ["e.jpg"]
    assert _names(engine.search("2019年4月", k=10)) == ["c.jpg"]
    assert _names(engine.search("2016-02-01..2016-02-02", k=10)) == ["h.jpg"]
    no_paris = engine.understand("paris hilton")  # no Paris photos here: the words stay text
    assert no_paris.places == [] and no_paris.text == "paris hilton" and not no_paris.parsed
    with pytest.raises(QueryError, match="no photo of this index was taken in a place called 'Atlantis'"):
        engine.search("place:Atlantis")

    db = str(tmp_path / "db")
    assert main(["search", "Osaka 2019", "--db", db]) == 0
    out = capsys.readouterr().out
    assert 'understood: place Osaka, Japan · year 2019 · text ""' in out and "c.jpg" in out and "d.jpg" not in out
    assert main(["search", "Osaka", "--db", db, "--sort", "date-asc"]) == 0
    table = capsys.readouterr().out
    assert table.index("c.jpg") < table.index("d.jpg")
    assert main(["search", "Osaka 2019", "--db", db, "--literal", "--all", "-k", "3"]) == 0
    assert "understood" not in capsys.readouterr().out


def test_near_keeps_the_photos_inside_the_radius_across_the_antimeridian_and_near_the_pole(trips, tmp_path):
    engine = _offline(tmp_path / "db")
    engine.index([trips])
    assert set(_names(engine.search("2016", near=(-16.45, 179.99, 30), k=20))) == {"h.jpg", "i.jpg"}
    assert set(_names(engine.search("2016", near=(-16.45, 179.99, 5), k=20))) == set()
    assert _names(engine.search("2015", near=(89.0, -120.0, 1450), k=20)) == ["j.jpg"]  # 1,391 km, over the pole
    assert _names(engine.search("2015", near=(89.0, -120.0, 1350), k=20)) == []
    assert set(_names(engine.search("2019", near=(38.72, -9.14, 20), k=20))) == {"a.jpg"}
    lisbon = engine.search("Portugal", near=(38.7139, -9.1394, 1.2), k=20)
    assert _names(lisbon) == ["a.jpg"]  # b.jpg is 1.8 km away
    for lat, lon, km in ((-16.45, 179.99, 30), (89.0, -120.0, 1450)):
        for name, (plat, plon, _) in SHOTS.items():
            distance = 2 * 6371.0088 * math.asin(math.sqrt(
                math.sin(math.radians(plat - lat) / 2) ** 2
                + math.cos(math.radians(lat)) * math.cos(math.radians(plat)) * math.sin(math.radians(plon - lon) / 2) ** 2))
            assert within((lat, lon, km), plat, plon) == (distance <= km), name


def test_a_photo_outside_a_city_gets_that_city_or_its_region_never_another_continent():
    for lat, lon, country in ((38.95, -9.30, "Portugal"), (-1.50, 37.0, "Kenya"), (34.85, 135.75, "Japan"),
                              (64.30, -21.60, "Iceland"), (-34.05, 151.00, "Australia")):
        place = locate(lat, lon)  # about 25 km out
        assert place is not None and place.label.endswith(country) and place.km is not None and place.km < 50
    assert locate(0.0, -30.0) is None  # mid-Atlantic
    assert locate(-75.5, 0.0) is None or "Antarctica" in locate(-75.5, 0.0).label


def test_minus_a_word_drops_the_photos_whose_texts_hold_it(tiny_env, tmp_path, capsys):
    root = tmp_path / "pets"
    root.mkdir()
    for name, caption in (("p1.jpg", "a cat on a sofa"), ("p2.jpg", "a dog on a sofa"), ("p3.jpg", "a sofa by a window")):
        scene_picture(hash(name) % 1000, (96, 72)).save(root / name)
        (root / f"{name}.txt").write_text(caption)
    assert main(["index", str(root)]) == 0
    engine = SearchEngine(tiny_env)
    assert set(_names(engine.search("sofa", k=10))) == {"p1.jpg", "p2.jpg", "p3.jpg"}
    assert set(_names(engine.search("sofa -cat", k=10))) == {"p2.jpg", "p3.jpg"}
    assert set(_names(engine.search('sofa -"a dog"', k=10))) == {"p1.jpg", "p3.jpg"}
    assert engine.understand("sofa -cat").excluded == ["cat"]


def test_an_existing_index_gets_its_places_without_re_encoding_an_image(trips, make_engine, tiny_encoders, monkeypatch):
    import mmsearch.media.images
    from mmsearch.store.migrations import VERSION_KEY

    with monkeypatch.context() as before:  # as mmsearch wrote indexes before places: no GPS read
        before.setattr(mmsearch.media.images, "gps_position", lambda gps: (None, None, ""))
        engine = make_engine()
        assert engine.index([trips]).added == 13
    assert not any("place" in m or "lat" in m for _, m in engine.store.all_metadata())
    images = engine.store.client.get_collection(engine.store.name("images"), embedding_function=None)
    images.modify(metadata={**(images.metadata or {}), VERSION_KEY: 8})
    engine.session.keywords_path().unlink()  # the run kept its keyword index under version 9's key

    encoded, embedded = count_encoder_calls(monkeypatch, tiny_encoders.image, tiny_encoders.text)
    fresh = make_engine()
    assert fresh.store.upgrade() == [9]
    assert encoded == [] and embedded == []  # nothing encoded: positions come from the files' EXIF
    metas = {m["name"]: m for _, m in fresh.store.all_metadata()}
    assert metas["e.jpg"]["place"] == "Nairobi, Nairobi County, Kenya" and "place" not in metas["nogps.jpg"]
    fresh.session.changed()
    assert set(_names(fresh.search("Kenya", k=5))) == {"e.jpg"}


def test_parsing_a_query_reads_dates_places_negation_and_fields():
    from mmsearch.search.places import PlaceBook
    from mmsearch.search.understand import understand

    book = PlaceBook.from_metadata([p.fields() for p in (locate(34.69, 135.5), locate(38.72, -9.14))])
    u = understand('beach in Lisbon -crowd -"red car" camera:"Canon EOS" 2019', book)
    assert (u.text, u.camera, u.excluded) == ("beach", "Canon EOS", ["crowd", "red car"])
    assert u.date_from.isoformat() == "2019-01-01" and u.date_to.isoformat() == "2019-12-31"
    assert u.describe(book) == ("place Lisbon, Portugal · year 2019 · camera Canon EOS · not 'crowd' · not 'red car' · "
                                'text "beach"')
    u = understand("sunset before:2020-01 after:2019-06 April", book)
    assert (u.date_from.isoformat(), u.date_to.isoformat(), u.text) == ("2019-07-01", "2019-12-31", "sunset April")
    assert understand("Sept 2020", book).date_to.isoformat() == "2020-09-30"
    assert understand("大阪的海滩", book).text == "的海滩" and understand("大阪的海滩", book).places[0][0] == "大阪"
    assert understand("new york", book).text == "new york"


def test_the_page_filters_by_a_place_of_its_facet_orders_by_date_and_says_what_it_understood(trips, tmp_path):
    from mmsearch_web.app import place_choices
    from mmsearch_web.views import SearchForm, hit_details, run_search

    from mmsearch.media.thumbnails import ThumbnailCache

    engine = _offline(tmp_path / "db")
    engine.index([trips])
    choices = place_choices(engine.places.facet())
    labels = dict((key, label) for label, key in choices)
    assert labels["PT"] == "Portugal (2)" and labels["2267057"] == "    Lisbon, Portugal (2)"
    assert [key for _, key in choices].index("PT") < [key for _, key in choices].index("2267057")
    thumbs = ThumbnailCache(tmp_path / "thumbs")
    oldest = run_search(engine, thumbs, SearchForm("2019 2021", place="JP", sort="oldest", min_relevance=0))
    assert oldest.status.startswith("No close") or oldest.hits == []  # two years at once keep nothing
    found = run_search(engine, thumbs, SearchForm("Japan", sort="oldest"))
    assert [Path(h["file"]).name for h in found.hits] == ["c.jpg", "d.jpg"]
    assert found.status == '2 results · understood: place Japan · text ""'
    assert "**Place**: Osaka, Japan · 34.69370, 135.50230" in hit_details(found.hits[0])
    by_key = run_search(engine, thumbs, SearchForm("2021", place="2267057"))
    assert [Path(h["file"]).name for h in by_key.hits] == ["b.jpg"]


def test_a_photo_saved_again_without_its_position_camera_and_caption_loses_them(tmp_path):
    """Chroma merges the metadata of a record it replaces: the fields a re-indexed photo no longer has are
    deleted, not kept from before (a stripped photo was still found by its old place, camera and caption)."""
    from PIL import Image

    root = tmp_path / "photos"
    root.mkdir()
    exif = Image.Exif()
    exif.load(gps_exif(38.7223, -9.1393, "2019:05:05 10:00:00"))
    exif[0x0110] = "Pixel 7"
    scene_picture(5, (96, 72)).save(root / "trip.jpg", exif=exif.tobytes())
    (root / "trip.jpg.txt").write_text("a tram in the old town\n")
    engine = _offline(tmp_path / "db")
    engine.index([root])
    (before,) = [m for _, m in engine.store.all_metadata()]
    assert before["place"] == "Lisbon, Portugal" and before["camera"] == "Pixel 7" and before["captions"]
    scene_picture(6, (96, 72)).save(root / "trip.jpg")  # stripped: no EXIF at all
    (root / "trip.jpg.txt").unlink()
    engine.index([root])
    (after,) = [m for _, m in engine.store.all_metadata()]
    assert not {"place", "place_keys", "lat", "lon", "camera", "captions", "taken"} & after.keys(), after
    assert engine.store.caption_count() == 0
    assert engine.search("tram", k=5, min_relevance=0.5) == [] and engine.search("Lisbon", k=5) == []
    assert engine.search("photo", camera="Pixel 7", k=5) == []
