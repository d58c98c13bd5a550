"""The folder and camera facets (``SearchEngine.facets``) come from the keyword index's one pass over the
metadata and are kept on disk with it, so a big index does not read every record again for the page's
filters."""

from PIL import Image

from mmsearch import Config, SearchEngine


def _photo(path, colour, camera=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (64, 48), colour)
    exif = Image.Exif()
    if camera:
        exif[0x010F], exif[0x0110] = camera.split(" ", 1)  # Make, Model
    image.save(path, exif=exif)


def _engine(tmp_path):
    return SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))


def test_folders_are_counted_at_every_depth_and_cameras_listed(tmp_path):
    library = tmp_path / "library"
    _photo(library / "2023" / "beach" / "a.jpg", (200, 10, 10), "Canon EOS 5D")
    _photo(library / "2023" / "beach" / "b.jpg", (10, 200, 10))
    _photo(library / "2024" / "c.jpg", (10, 10, 200), "Google Pixel 8")
    engine = _engine(tmp_path)
    engine.index([library])
    facets = engine.facets()
    root = str(library)
    assert facets["folder_counts"] == {root: 3, f"{root}/2023": 2, f"{root}/2023/beach": 2, f"{root}/2024": 1}
    assert facets["folders"] == sorted(facets["folder_counts"])  # nothing above the indexed root
    assert facets["cameras"] == ["Canon EOS 5D", "Google Pixel 8"]


def test_a_fresh_process_reads_the_facets_from_the_cache_and_an_index_run_updates_them(tmp_path, monkeypatch):
    library = tmp_path / "library"
    _photo(library / "old" / "a.jpg", (200, 10, 10))
    first = _engine(tmp_path)
    first.index([library])
    first.facets()  # one pass over the metadata, kept on disk with the keyword index
    later = _engine(tmp_path)  # as a new process would open it

    def every_record():
        raise AssertionError("the facets read every record again")

    with monkeypatch.context() as patch:
        patch.setattr(later.store, "all_metadata", every_record)
        assert later.facets()["folder_counts"] == {str(library): 1, str(library / "old"): 1}
    _photo(library / "new" / "b.jpg", (10, 200, 10), "Canon EOS 5D")
    later.index([library])
    facets = later.facets()
    assert facets["folder_counts"][str(library)] == 2 and facets["folder_counts"][str(library / "new")] == 1
    assert facets["cameras"] == ["Canon EOS 5D"]


def test_a_folder_that_is_gone_is_not_offered(tmp_path):
    library = tmp_path / "library"
    _photo(library / "gone" / "a.jpg", (200, 10, 10))
    _photo(library / "kept" / "b.jpg", (10, 200, 10))
    engine = _engine(tmp_path)
    engine.index([library])
    (library / "gone" / "a.jpg").rename(tmp_path / "a.jpg")
    (library / "gone").rmdir()
    assert str(library / "gone") not in engine.facets()["folders"]  # unmounted or deleted since the last run
