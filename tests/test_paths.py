"""The path rules every layer shares, made without path objects on POSIX, are exactly pathlib's."""

from __future__ import annotations

import random
from pathlib import PurePosixPath

import pytest

from mmsearch.paths import folders_of, name_and_parent

PIECES = ["", "/", "//", "///", ".", "..", "a", "b c", "IMG_0042.jpg", "一只猫.heic", ".hidden", "x."]


def _paths() -> list[str]:
    rng = random.Random(11)
    made = {"", "/", "//", "///", ".", "a", "/a", "//a/b", "///a/b", "a/b/", "/a/./b", "./a", "../a/b.jpg",
            "/home/me/Pictures/2015/00001/IMG_0000001.jpg"}
    while len(made) < 400:
        made.add("".join(rng.choice(PIECES) + rng.choice(["/", "//", ""]) for _ in range(rng.randint(1, 6))))
    return sorted(made)


@pytest.mark.parametrize("path", _paths())
def test_names_parents_and_folders_are_pathlibs(path):
    pure = PurePosixPath(path)
    assert name_and_parent(path) == (pure.name, pure.parent.parts)
    assert folders_of(path) == [str(p) for p in reversed(pure.parents)]
