"""avs-batch's inputs: folders, globs, list files (text, CSV, Parquet), URLs; stable, distinct output names."""

from __future__ import annotations

import os
import re

import pytest

from avs_engine.runtime.inputs import expand_inputs, is_url, video_id


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in ["a/clip.mp4", "a/two.mkv", "a/notes.txt", "a/.hidden.mp4", "b/clip.mp4"]:
        (tmp_path / p).write_bytes(b"x")
    return tmp_path


def test_folder_glob_file_url_in_order_each_once(tree, monkeypatch):
    monkeypatch.chdir(tree)
    got = expand_inputs(["a", "b/*.mp4", "a/clip.mp4", "https://example.org/v/x.mp4?sig=1"], job=True)
    assert [s.source for s in got.videos] == [str(tree / "a/clip.mp4"), str(tree / "a/two.mkv"), str(tree / "b/clip.mp4"),
                                             "https://example.org/v/x.mp4?sig=1"]
    assert got.errors == [] and any("more than once" in n for n in got.notes)


def test_list_files_text_csv_parquet(tree):
    (tree / "l.txt").write_text("# my videos\n\na/clip.mp4\n" + str(tree / "b/clip.mp4") + "\ns3://bucket/v.mp4\n")
    (tree / "h.csv").write_text("id,path\n1,a/two.mkv\n2,http://h/v.mp4\n")
    (tree / "n.csv").write_text("a/clip.mp4,ignored\nb/clip.mp4,x\n")
    got = expand_inputs([str(tree / "l.txt"), f"@{tree / 'h.csv'}", str(tree / "n.csv")], job=True)
    assert [s.source for s in got.videos] == [str(tree / "a/clip.mp4"), str(tree / "b/clip.mp4"), "s3://bucket/v.mp4",
                                             str(tree / "a/two.mkv"), "http://h/v.mp4"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": [1, 2], "source": ["a/clip.mp4", "gs://b/y.mkv"]}), tree / "l.parquet")
    got = expand_inputs([str(tree / "l.parquet")], job=True)
    assert [s.source for s in got.videos] == [str(tree / "a/clip.mp4"), "gs://b/y.mkv"]


def test_errors_are_one_line_each_and_do_not_stop_the_rest(tree):
    (tree / "empty.txt").write_text("# nothing\n")
    (tree / "bad.parquet").write_bytes(b"not parquet")
    got = expand_inputs([str(tree / "missing.mp4"), str(tree / "b"), "nomatch*/x.mp4", str(tree / "empty.txt"),
                          str(tree / "bad.parquet"), f"@{tree / 'nolist.txt'}"], job=True)
    assert [s.source for s in got.videos] == [str(tree / "b/clip.mp4")]
    assert len(got.errors) == 5 and all("\n" not in e for e in got.errors), got.errors
    assert "file not found" in got.errors[0] and "no file matches" in got.errors[1]


def test_video_ids_are_stable_distinct_and_safe():
    a, b = video_id("/data/a/clip.mp4"), video_id("/data/b/clip.mp4")
    assert a != b and a.startswith("clip-") and a == video_id("/data/a/clip.mp4")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", video_id("https://h/p/we ird\nname$.mp4?x=1"))
    assert video_id("https://h/p/").startswith("p-") and video_id("s3://b/") != video_id("s3://c/")
    assert is_url("s3://b/k") and is_url("file:///x") and not is_url("/x/y.mp4") and not is_url("C:/x")
    assert os.sep not in video_id("../../etc/passwd")
