"""avs-run takes files, folders, quoted globs and @list files; a bad path is one error line and the rest still runs."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from avs_engine.runtime.inputs import expand_inputs
from avs_engine.cli.run import main


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    from tests.media_factory import make_video

    path = tmp_path_factory.mktemp("media") / "short.mp4"
    make_video(path, seconds=2.2, fps=10, size=(64, 48))
    return path


@pytest.fixture
def videos(tmp_path, short_video):
    d = tmp_path / "videos"
    d.mkdir()
    for n in ("b.mp4", "a.MKV", "c.mov"):
        shutil.copy(short_video, d / n)
    (d / "notes.txt").write_text("not a video")
    (d / "sub").mkdir()
    (d / ".hidden.mp4").write_bytes(b"")
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_folder_expands_to_its_videos_sorted(videos):
    got = expand_inputs([str(videos)])
    assert [i.path.name for i in got.videos] == ["a.MKV", "b.mp4", "c.mov"]
    assert not got.errors and len(got.notes) == 1 and "notes.txt" in got.notes[0] and "sub/" in got.notes[0]


def test_glob_list_and_errors_in_order(videos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lst = tmp_path / "lists" / "batch.txt"
    lst.parent.mkdir()
    lst.write_text(f"# my batch\n{videos / 'c.mov'}\n\n../videos/b.mp4\nmissing.mp4\n{videos / 'sub'}\n")
    got = expand_inputs(["videos/[ab]*", f"@{lst}", "nothing*.mp4", "@nolist.txt", "gone.mp4"])
    assert [i.path.name for i in got.videos] == ["a.MKV", "b.mp4", "c.mov"]  # b.mp4 from the list is the same file: once
    errors = got.errors
    assert len(errors) == 5
    assert "missing.mp4: file not found (listed in" in errors[0] and "line 5" in errors[0]
    assert "sub: is a folder" in errors[1] and "line 6" in errors[1]
    assert errors[2] == "nothing*.mp4: no file matches this pattern"
    assert "nolist.txt: cannot read this list" in errors[3]
    assert errors[4] == "gone.mp4: file not found"
    assert any("named more than once" in n for n in got.notes)


def test_unreadable_file(tmp_path, short_video, monkeypatch):
    import os

    from avs_engine.runtime import inputs

    p = tmp_path / "locked.mp4"
    shutil.copy(short_video, p)
    p.chmod(0)
    if os.geteuid() == 0:  # root reads every file: make open() refuse as it would for a user
        import builtins

        def refuse(path, *a, **k):
            if str(path) == str(p):
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, *a, **k)

        monkeypatch.setattr(inputs, "open", refuse, raising=False)
    got = expand_inputs([str(p), str(short_video)])
    assert got.errors == [f"{p}: cannot read (permission denied)"] and [i.path for i in got.videos] == [short_video]


def test_bad_paths_do_not_stop_the_batch(videos, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text(f"{videos / 'a.MKV'}\n{videos}\n")
    r = run(tmp_path / "missing.mp4", f"{videos}/b*", f"@{lst}", "--project", tmp_path / "runs", "--no-overlay", "-q")
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines()[0].startswith("model: demo")  # the first line names the model
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2 and "missing.mp4: file not found" in errors[0] and "is a folder" in errors[1]
    assert sorted(p.name for p in (tmp_path / "runs" / "run").iterdir()) == ["a", "b"]
    assert "2/4 video(s) done" in r.stdout and "Results saved to" in r.stdout


def test_nothing_to_run_is_exit_2_and_no_folder(tmp_path):
    r = run(tmp_path / "missing.mp4", f"{tmp_path}/*.mp4", "--project", tmp_path / "runs")
    assert r.exit_code == 2
    assert [l.split(":")[0] for l in r.stderr.splitlines()] == ["error", "error", "error"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_control_characters_in_a_name_stay_on_one_line(tmp_path, short_video):
    from tests.media_factory import make_garbage_file

    bad = tmp_path / "two\nlines\t.mp4"
    make_garbage_file(bad)
    r = run(bad, short_video, "--project", tmp_path / "runs", "--no-overlay", "-q")
    assert r.exit_code == 1
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "two\\nlines\\t.mp4" in errors[0], r.stderr
    assert not [l for l in r.stderr.splitlines() if l.startswith("lines")]


def test_exist_ok_and_json(tmp_path, short_video):
    project = tmp_path / "runs"
    for _ in range(2):
        r = run(short_video, "--project", project, "--no-overlay", "-q", "--exist-ok", "--json")
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (project / "run").iterdir()) == ["short", "short_2"]
    assert not (project / "run2").exists()
    doc = json.loads(r.stdout)
    assert doc["run_dir"] == str(project / "run") and doc["videos"][0]["output_dir"].endswith("short_2")
