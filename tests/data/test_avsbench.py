"""AVSBench layout: generated clips written as S4 / MS3 read back by the loader; log-mel pickles."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from avs_engine.data.avsbench import AVSBenchDataset, DatasetError, load_log_mel_pickle, write_split
from avs_engine.data.generator import generate_clip, split_seeds
from avs_engine.io.logmel import vggish_examples


@pytest.fixture(scope="module")
def clips():
    return [generate_clip(s) for s in split_seeds("val", 2)]


@pytest.mark.parametrize("subset", ["ms3", "s4"])
def test_round_trip(tmp_path, clips, subset):
    write_split(tmp_path, subset, "train", clips[:1])
    write_split(tmp_path, subset, "test", clips)
    train = AVSBenchDataset(tmp_path, subset, "train")
    test = AVSBenchDataset(tmp_path, subset, "test")
    assert len(train) == 1 and len(test) == 2
    for i, clip in enumerate(clips):
        s = test[i]
        assert s.name == clip.name
        np.testing.assert_array_equal(s.frames, clip.frames)
        np.testing.assert_array_equal(s.masks, clip.masks)
        assert s.mask_valid.all()
        np.testing.assert_array_equal(s.burst, clip.plan.burst)
        # wav is 16-bit PCM: log-mel equal to that of the float audio up to quantisation
        assert s.log_mel.shape == (5, 1, 96, 64)
        assert np.abs(s.log_mel - vggish_examples(clip.audio, 5)).max() < 0.05
    s = train[0]
    n_masks = 1 if subset == "s4" else 5
    assert s.mask_valid.tolist() == [True] * n_masks + [False] * (5 - n_masks)
    np.testing.assert_array_equal(s.masks[:n_masks], clips[0].masks[:n_masks])


def test_missing_files_name_the_path(tmp_path, clips):
    write_split(tmp_path, "ms3", "test", clips[:1])
    next((tmp_path / "gt_masks").rglob("*_3.png")).unlink()
    with pytest.raises(DatasetError, match="_3.png"):
        AVSBenchDataset(tmp_path, "ms3", "test")[0]
    with pytest.raises(DatasetError, match="metadata CSV"):
        AVSBenchDataset(tmp_path / "nowhere", "s4", "test")


def test_log_mel_pickle_is_loaded_without_executing(tmp_path):
    torch = pytest.importorskip("torch")
    x = torch.randn(5, 1, 96, 64)
    good = tmp_path / "a.pkl"
    with open(good, "wb") as f:
        pickle.dump(x, f)  # what AVSBench's preprocessing wrote
    np.testing.assert_array_equal(load_log_mel_pickle(good), x.numpy())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "b.pkl"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DatasetError, match="not a readable log-mel pickle"):
        load_log_mel_pickle(bad)


def test_generated_video_is_a_playable_mp4(tmp_path):
    from avs_engine.data.video import write_generated_video
    from avs_engine.io.probe import probe

    facts = write_generated_video(tmp_path / "v.mp4", split_seeds("demo", 1)[0], seconds=2, fps=8, size=(64, 64))
    info = probe(str(tmp_path / "v.mp4"))
    assert info.has_audio and (info.width, info.height) == (64, 64)
    assert abs(info.duration_s - 2.0) < 0.2
    assert len(facts["sounding"]) == 2 and (tmp_path / "v.json").is_file()
