"""Output folders: numbered run folders that never overwrite; staged per-video outputs."""

import threading

import pytest

from avs_engine.runtime.outputs import VideoOutput, next_run_dir


def test_run_dirs_are_numbered(tmp_path):
    root = tmp_path / "runs"
    names = [next_run_dir(root).name for _ in range(4)]
    assert names == ["run", "run2", "run3", "run4"]
    assert all((root / n).is_dir() for n in names)
    assert next_run_dir(root, name="exp").name == "exp"


def test_run_dirs_continue_after_the_highest(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run7").mkdir()
    (tmp_path / "runner").mkdir()    # other names do not count
    assert next_run_dir(tmp_path).name == "run8"


def test_run_dirs_never_collide_under_threads(tmp_path):
    got, lock = [], threading.Lock()

    def work():
        for _ in range(5):
            p = next_run_dir(tmp_path)
            with lock:
                got.append(p)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 20


def test_video_output_commit(tmp_path):
    out = VideoOutput(tmp_path, "clip")
    assert out.path.name == ".clip.partial" and out.path.is_dir()
    (out.path / "result.json").write_text("{}")
    final = out.commit()
    assert final == tmp_path / "clip" and (final / "result.json").exists()
    assert not out.path.exists()
    assert out.commit() == final   # idempotent


def test_video_output_name_taken_gets_suffix(tmp_path):
    for expected in ("clip", "clip_2", "clip_3"):
        with VideoOutput(tmp_path, "clip") as out:
            (out.path / "x").write_text("1")
        assert out.final_path == tmp_path / expected
    # An empty folder of that name is not taken over either.
    (tmp_path / "other").mkdir()
    with VideoOutput(tmp_path, "other") as out:
        pass
    assert out.final_path.name == "other_2"


def test_video_output_discarded_on_error(tmp_path):
    with pytest.raises(KeyError):
        with VideoOutput(tmp_path, "clip") as out:
            (out.path / "half.png").write_bytes(b"x")
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
    assert out.final_path is None


def test_video_output_two_stagings_of_one_stem(tmp_path):
    a, b = VideoOutput(tmp_path, "clip"), VideoOutput(tmp_path, "clip")
    assert a.path != b.path
    b.discard()
    assert a.commit().name == "clip"
    with pytest.raises(RuntimeError):
        b.commit()
