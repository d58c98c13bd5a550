"""Bad input on the command line: one line on stderr, exit 1 (argparse's own usage errors exit 2), never a
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("path,caption\nx.jpg,caf\xe9 cr\xe8me\n".encode("latin-1"))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    (tmp_path / "photos").mkdir()
    odd = tmp_path / "odd.json"
    odd.write_text('{"format": "mmsearch-duplicates-moves", "version": 2, "moved": [{"from": 1}]}')
    return {"tmp": str(tmp_path), "latin1": str(latin1), "file": str(a_file), "photos": str(tmp_path / "photos"),
            "odd": str(odd)}


CASES = [  # (argv with {placeholders}, exit code, what stderr says)
    (["eval", "{photos}", "--captions", "/nonexistent.csv", "--db", "{tmp}/db", "--offline"], 1, "/nonexistent.csv"),
    (["index", "{photos}", "--captions", "{latin1}", "--db", "{tmp}/db", "--offline"], 1, "UTF-8"),
    (["index", "{photos}", "--db", "{file}", "--offline"], 1, "{file}"),
    (["duplicates", "--db", "{tmp}/db", "--offline", "--undo", "{odd}"], 1, "is not a duplicates manifest"),
    (["stats", "--db", "{tmp}/never-made"], 1, "there is no index at"),
    (["search", "x", "--db", "{tmp}/never-made", "--offline"], 1, "there is no index at"),
    (["export", "{tmp}/out", "--db", "{tmp}/never-made"], 1, "there is no index at"),
    (["stats", "--chroma-url", "not-a-url"], 1, "is http://host:port"),
    (["serve", "--port", "99999"], 2, "is not a port"),
    (["serve", "--max-file-size", "abc"], 2, "is not a size"),
    (["search", "x", "--text-weight", "7"], 2, "is not a number from 0 to 1"),
    (["search", "x", "--text-weight", "nan"], 2, "is not a number from 0 to 1"),
    (["search", "x", "--min-relevance", "-3"], 2, "is not a number from 0 to 1"),
    (["eval", "{photos}", "--captions", "x.csv", "--limit", "-1"], 2, "is not a whole number of at least 1"),
]


@pytest.mark.parametrize(("argv", "code", "said"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_gets_one_line_and_no_traceback(files, capsys, argv, code, said):
    args = [a.format(**files) for a in argv]
    if code == 2:
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
    else:
        assert main(args) == 1
    err = capsys.readouterr().err
    assert said.format(**files) in err and "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1 and err.startswith("mmsearch: error: "), err


def test_library_calls_with_wrong_types_raise_the_mmsearch_errors(tmp_path):
    from helpers import make_photos

    from mmsearch import Config, SearchEngine
    from mmsearch.errors import ConfigError, MMSearchError, QueryError

    engine = SearchEngine(config=Config.offline_profile(Config(db=str(tmp_path / "db"))))
    photos = make_photos(tmp_path / "photos")
    engine.index([photos])
    calls = [
        (QueryError, lambda: engine.search(123)),  # type: ignore[arg-type]
        (QueryError, lambda: engine.search("x", date_from=123)),  # type: ignore[arg-type]
        (QueryError, lambda: engine.search("x", min_score="x")),  # type: ignore[arg-type]
        (QueryError, lambda: engine.search("x", positive=[None])),  # type: ignore[list-item]
        (QueryError, lambda: engine.search("x", min_relevance="high")),
        (ConfigError, lambda: engine.index(None)),  # type: ignore[arg-type]
        (QueryError, lambda: engine.forget_feedback(path=5)),  # type: ignore[arg-type]
        (ConfigError, lambda: engine.duplicates(max_bits="x")),  # type: ignore[arg-type]
        (ConfigError, lambda: SearchEngine(tmp_path / "other", clip_model=5)),
    ]
    for kind, call in calls:
        with pytest.raises(kind) as raised:
            call()
        assert isinstance(raised.value, MMSearchError) and "\n" not in str(raised.value)


def test_reading_a_database_that_does_not_exist_never_makes_it(tmp_path, capsys):
    assert main(["stats", "--db", str(tmp_path / "typo")]) == 1
    assert not (tmp_path / "typo").exists()
