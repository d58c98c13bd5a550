"""Caption manifests and sidecar files."""

from __future__ import annotations

import json

import pytest

from mmsearch.captions import load_manifest, merge_captions, sidecar_captions
from mmsearch.errors import ConfigError


def test_csv_manifest_allows_several_captions_per_image_relative_to_itself(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "captions.csv"
    manifest.write_text('path,caption,lang\ncat.jpg,"a cat, sleeping",en\ncat.jpg,一只猫,zh\n../dog.png,a dog,en\n')
    got = load_manifest(manifest)
    assert got == {str(tmp_path / "sub" / "cat.jpg"): ["a cat, sleeping", "一只猫"], str(tmp_path / "dog.png"): ["a dog"]}


def test_jsonl_manifest_accepts_lists(tmp_path):
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(json.dumps({"path": "a.jpg", "caption": ["one", "two"]}) + "\n\n"
                        + json.dumps({"path": "a.jpg", "caption": "three"}, ensure_ascii=False) + "\n")
    assert load_manifest(manifest) == {str(tmp_path / "a.jpg"): ["one", "two", "three"]}


@pytest.mark.parametrize(("name", "content", "message"), [
    ("c.csv", "file,text\na.jpg,x\n", "path,caption"),
    ("c.csv", "path,caption\na.jpg,\n", ":2: each row needs"),
    ("c.jsonl", '{"path": "a.jpg"', ":1: not JSON"),
    ("c.txt", "whatever", "must end in .csv or .jsonl"),
])
def test_bad_manifests_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_manifest(tmp_path / name)


def test_missing_manifest(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_manifest(tmp_path / "nope.csv")


def test_sidecars_both_forms_one_caption_per_line(tmp_path):
    image = tmp_path / "cat.jpg"
    (tmp_path / "cat.jpg.txt").write_text("a cat\n\nanother line\n")
    (tmp_path / "cat.txt").write_text("a tabby\n")
    assert sidecar_captions(image) == ["a cat", "another line", "a tabby"]
    assert sidecar_captions(tmp_path / "dog.jpg") == []


def test_merge_keeps_first_source_of_each_text():
    assert merge_captions([("a", "manifest")], [("a", "sidecar"), ("b", "sidecar")]) == [("a", "manifest"), ("b", "sidecar")]
