"""The keyword file's packed structures: strings and sorted list tables read without an object per entry,
changed by copies, and saved again by merging what changed into the arrays they were read from."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mmsearch.packed import ListTable, PackedStrings, RowFinder
from mmsearch.search.keywords import stem

ODD = ["", "a", "IMG_0042.jpg", "一只猫", "nul\x00inside", "lone \udc80 surrogate", "é", "zz" * 40]


def test_packed_strings_read_back_every_string_and_keep_appended_ones_to_their_copy():
    packed = PackedStrings(tail=list(ODD))
    data, ends = packed.arrays()
    read = PackedStrings(data.tobytes(), ends)
    assert list(read) == ODD and [read[n] for n in range(len(ODD))] == ODD and read[-1] == ODD[-1]
    assert read == ODD and read == packed and read != ODD[:-1]
    assert read[1:3] == ODD[1:3] and len(read) == len(ODD)
    with pytest.raises(IndexError):
        read[len(ODD)]
    grown = read.copy()
    grown.extend(["new", "一"])
    assert list(read) == ODD and list(grown) == [*ODD, "new", "一"] and grown[len(ODD)] == "new"
    data, ends = grown.arrays()
    assert list(PackedStrings(data.tobytes(), ends)) == [*ODD, "new", "一"]


def _reread(table: ListTable, columns: int) -> ListTable:
    arrays = table.arrays("t_")
    reread = ListTable.from_arrays(arrays, "t_", (np.int32, np.float32)[:columns])
    assert reread is not None
    return reread


def _as_dict(table: ListTable) -> dict[str, list[list[float]]]:
    return {key: [list(map(float, column)) for column in row] for key, row in table.items()}


@pytest.mark.parametrize("seed", range(6))
def test_a_list_table_saved_after_changes_is_the_table_a_dict_of_the_same_rows_gives(seed):
    rng = random.Random(seed)
    words = [*ODD[1:], *(f"w{n}" for n in range(60)), *(f"长{n}" for n in range(20))]

    def row() -> tuple[np.ndarray, np.ndarray]:
        size = rng.randint(0, 5)
        return (np.asarray([rng.randrange(1000) for _ in range(size)], np.int32),
                np.asarray([rng.random() for _ in range(size)], np.float32))

    want = {w: row() for w in rng.sample(words, 30)}
    table = _reread(ListTable.of(2, want.items()), 2)
    for _ in range(5):
        table = table.copy()
        for word in rng.sample(words, rng.randint(0, 12)):  # keys the arrays hold, and new ones
            want[word] = table[word] = row()
        assert len(table) == len(want) and set(table) == set(want)
        assert _as_dict(table) == _as_dict(ListTable.of(2, want.items()))
        assert all(table.get(w) is None for w in words if w not in want)
        table = _reread(table, 2)
        assert _as_dict(table) == _as_dict(ListTable.of(2, want.items()))
        assert [table[w][0].tolist() for w in sorted(want)] == [want[w][0].tolist() for w in sorted(want)]


def test_a_copy_leaves_the_table_it_was_made_from_as_it_was():
    table = _reread(ListTable.of(1, [("cat", (np.asarray([1, 2], np.int32),))]), 1)
    copy = table.copy()
    copy["cat"] = (np.asarray([9], np.int32),)
    copy["dog"] = (np.asarray([3], np.int32),)
    assert table["cat"][0].tolist() == [1, 2] and "dog" not in table and len(table) == 1
    assert copy["cat"][0].tolist() == [9] and len(copy) == 2


def test_arrays_that_do_not_fit_together_are_refused():
    arrays = ListTable.of(1, [("a", (np.asarray([1, 2], np.int32),))]).arrays("t_")
    arrays["t_values0"] = arrays["t_values0"][:1]
    assert ListTable.from_arrays(arrays, "t_", (np.int32,)) is None


@pytest.mark.parametrize("name", ["img_0042.jpg", "archive.tar.gz", ".bashrc", "trailing.", "plain", "", "a.b"])
def test_stem_is_the_stem_pathlib_gives(name):
    from pathlib import PurePath

    assert stem(name) == (PurePath(name).stem if name else "")


def test_containing_finds_each_entry_holding_a_part_once_and_never_across_two():
    texts = ["red door", "a red", "door red door", "", "reddoor", "一只猫 red door", "nul\x00red door"]
    packed = PackedStrings(tail=texts[:4])
    data, ends = packed.arrays()
    read = PackedStrings(data.tobytes(), ends)
    read.extend(texts[4:])  # three more after the packed ones
    for part in ["red door", "red", "a redd", "door", "一只猫", "\x00r", "zzz"]:
        assert read.containing(part).tolist() == [n for n, t in enumerate(texts) if part in t], part
    assert read.containing("redred").tolist() == []  # "a red" + "door red door" meet as "reddoor", not a match


@pytest.mark.parametrize("seed", range(4))
def test_entries_starting_with_or_equal_to_a_string_are_those_python_finds(seed):
    rng = random.Random(seed)
    parts = ["/a", "/a/b", "/ab", "é", "一", "\x00", "x", "/"]
    strings = [*ODD, *("".join(rng.choices(parts, k=rng.randint(0, 5))) for _ in range(300))]
    data, ends = PackedStrings(tail=strings[:250]).arrays()
    packed = PackedStrings(data.tobytes(), ends)
    packed.extend(strings[250:])  # and appended ones, held as strings
    assert list(packed) == strings
    for prefix in [*parts, "/a/", "/a/b/", "/ab/", "zz" * 40, "nul\x00", "lone \udc80"]:
        want = [n for n, text in enumerate(strings) if text.startswith(prefix)]
        assert packed.starting_with(prefix).tolist() == want, prefix
    for values in [set(), {""}, {"/a"}, {"/a/b", "一只猫", "zz" * 40}, set(rng.sample(strings, 20)), {"absent"}]:
        want = [n for n, text in enumerate(strings) if text in values]
        assert packed.equal_to_any(values).tolist() == want, values


@pytest.mark.parametrize("seed", range(4))
def test_entries_holding_a_field_are_those_python_splits(seed):
    """Fields of tab-separated entries: empty entries and fields, a field twice, at either end, multi-byte."""
    rng = random.Random(seed)
    fields = ["JP", "JP.13", "1850013", "P", "日本", "", "JPX"]
    strings = ["\t".join(rng.choices(fields, k=rng.randint(0, 4))) for _ in range(400)] + ["", "\t", "JP\t", "\tJP"]
    rng.shuffle(strings)
    data, ends = PackedStrings(tail=strings[:300]).arrays()
    packed = PackedStrings(data.tobytes(), ends)
    packed.extend(strings[300:])
    for value in ["JP", "JP.13", "1850013", "P", "日本", "JPX", "J", "absent", "JP\tJP"]:
        want = [n for n, text in enumerate(strings) if value in text.split("\t")]
        assert packed.with_field(value).tolist() == want, value


@pytest.mark.parametrize("seed", range(4))
def test_tables_joined_give_each_key_its_rows_one_after_another_in_the_tables_order(seed):
    rng = random.Random(seed)
    words = [*ODD, *(f"w{n}" for n in range(30)), *(f"长{n}" for n in range(10))]
    tables, want = [], {}
    for part in range(rng.randint(0, 5)):
        rows = {w: (np.asarray([part * 1000 + rng.randrange(1000) for _ in range(rng.randint(0, 4))], np.int32),)
                for w in rng.sample(words, rng.randint(0, 20))}
        for w, (docs,) in rows.items():
            want[w] = [*want.get(w, []), *docs.tolist()]
        table = ListTable.of(1, rows.items())
        tables.append(_reread(table, 1) if part % 2 else table)  # packed ones and ones held in a dict
    joined = ListTable.joined(1, tables)
    assert {key: docs.tolist() for key, (docs,) in joined.items()} == want
    assert all(joined[w][0].tolist() == docs for w, docs in want.items()) and len(joined) == len(want)
    assert _as_dict(_reread(joined, 1)) == _as_dict(joined)


def test_packing_strings_keeps_every_string_in_its_place():
    packed = PackedStrings(tail=ODD[:3])
    packed = packed.packed()
    packed.extend(ODD[3:])
    assert packed.packed() == ODD and packed.packed().encoded() == [s.encode("utf-8", "surrogatepass") for s in ODD]


def test_entries_at_rows_are_those_asked_one_by_one():
    packed = PackedStrings(tail=ODD).packed()
    rng = random.Random(3)
    for rows in ([], [0], [len(ODD) - 1, 0, 0], rng.choices(range(len(ODD)), k=50), list(range(len(ODD)))):
        assert packed.at(rows) == [packed[n] for n in rows] == [ODD[n] for n in rows]
        assert packed.at(np.asarray(rows, dtype=np.int64)) == [ODD[n] for n in rows]
    grown = packed.copy()
    grown.extend(["appended", "猫"])
    assert grown.at([len(ODD) + 1, 0, len(ODD)]) == ["猫", ODD[0], "appended"]
    everything = [*ODD, "appended", "猫"]
    for rows in ([len(ODD)], [len(ODD) + 1, len(ODD)], rng.choices(range(len(everything)), k=200)):
        assert grown.at(rows) == [grown[n] for n in rows] == [everything[n] for n in rows]
    ends_in_nul = PackedStrings(tail=["packed\x00"]).packed()
    ends_in_nul.extend(["appended\x00"])
    assert ends_in_nul.at([1, 0]) == ["appended\x00", "packed\x00"]


@pytest.mark.parametrize("seed", range(4))
def test_strings_kept_joined_and_found_by_row_are_those_a_list_gives(seed):
    rng = random.Random(seed)
    strings = [rng.choice(ODD) + str(rng.randrange(30)) for _ in range(200)]
    packed = PackedStrings(tail=strings[:150]).packed()
    packed.extend(strings[150:])  # a tail too: kept and joined pack it first
    keep = np.asarray([rng.random() < 0.5 for _ in strings])
    assert list(packed.kept(keep)) == [s for s, k in zip(strings, keep) if k]
    assert list(packed.kept(np.zeros(len(strings), bool))) == []
    assert list(packed.joined(PackedStrings(tail=["x", "一"]))) == [*strings, "x", "一"]
    finder = RowFinder(packed.packed())
    assert all(finder.row(s) == strings.index(s) for s in strings)  # a repeated string: its first row
    assert finder.row("absent") == -1 and RowFinder(PackedStrings()).row("") == -1


def test_a_row_found_by_a_hash_many_strings_share_is_still_the_string_asked(monkeypatch):
    import mmsearch.packed as packed_module

    monkeypatch.setattr(packed_module, "hash", len, raising=False)  # every string of one length collides
    strings = ["ab", "cd", "ef", "abc", "一"]
    finder = RowFinder(PackedStrings(tail=strings).packed())
    assert [finder.row(s) for s in strings] == [0, 1, 2, 3, 4]
    assert finder.row("gh") == -1 and finder.row("xyz") == -1
