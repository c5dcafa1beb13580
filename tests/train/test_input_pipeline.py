"""The training input pipeline: prefetched batches are host_batch's, in order; a failure in the
background thread surfaces once, with its message, and the thread is joined; a run with prefetching
gives the same weights bit for bit; CUDA's pinned copies (faked: no GPU here); one decode per video
per step; checkpoints written without moving the model; audio pretraining on the chosen device."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from avs_engine.errors import DatasetError
from avs_engine.reference import build_model
from avs_engine.train.input_pipeline import (BatchPrefetcher, HostBatch, batch_indices, batch_source, host_batch,
                                             pinned)
from avs_engine.train.loop import accumulate_gradients, train
from avs_engine.train.recipe import TrainConfig

BATCHES = [np.array(b) for b in ([0, 1], [1, 0], [1, 1], [0, 0], [1, 0])]


def _recipe(**kw):
    base = dict(lr=2e-3, loss="bce+iou", target="lowres", freeze=(), batch_clips=2, epochs=1, steps_per_epoch=3)
    base.update(kw)
    return TrainConfig().replace(**base)


def _equal(a: HostBatch, b: HostBatch) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def _no_batch_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith(("avs-train-batches", "avs-train-decode"))]


@pytest.mark.parametrize("workers", [1, 2])
def test_prefetched_batches_are_host_batch_in_order(tiny_split, workers):
    with BatchPrefetcher(tiny_split, BATCHES, depth=2, workers=workers) as source:
        got = list(source)
    assert len(got) == len(BATCHES)
    for idx, batch in zip(BATCHES, got):
        assert _equal(batch, host_batch(tiny_split, idx))
    assert _no_batch_threads()


def test_batch_order_is_the_epochs_permutations():
    idx = list(batch_indices(n=5, batch_clips=2, seed=3, steps_per_epoch=2, start=1, total=4))
    orders = [np.random.default_rng([3, e]).permutation(5) % 5 for e in (0, 1)]
    assert [list(i) for i in idx] == [list(orders[0][2:4]), list(orders[1][0:2]), list(orders[1][2:4])]


class _Failing:
    """A split whose video ``bad`` cannot be read."""

    def __init__(self, split, bad: int) -> None:
        self.split, self.bad, self.mask_valid = split, bad, split.mask_valid

    def image_input(self, i):
        if i == self.bad:
            raise DatasetError(f"video {i}: frame 3 is missing")
        return self.split.image_input(i)

    def log_mel_input(self, i):
        return self.split.log_mel_input(i)

    def masks(self, i):
        return self.split.masks(i)


def test_error_in_the_producer_surfaces_once_and_the_thread_is_joined(tiny_split):
    batches = [np.array([0]), np.array([0]), np.array([1]), np.array([0])]
    source = BatchPrefetcher(_Failing(tiny_split, 1), batches, depth=2)
    assert _equal(next(source), host_batch(tiny_split, [0]))
    assert _equal(next(source), host_batch(tiny_split, [0]))
    with pytest.raises(DatasetError, match=r"^video 1: frame 3 is missing$"):
        next(source)
    with pytest.raises(StopIteration):  # once: the batch after it is not built
        next(source)
    assert not source._thread.is_alive() and _no_batch_threads()


def test_close_joins_a_producer_waiting_on_a_full_queue(tiny_split):
    source = BatchPrefetcher(tiny_split, [np.array([0])] * 50, depth=1)
    next(source)
    time.sleep(0.2)  # the producer has filled the queue and waits
    t0 = time.perf_counter()
    source.close()
    assert not source._thread.is_alive() and time.perf_counter() - t0 < 5
    with pytest.raises(StopIteration):
        next(source)


def test_a_failed_step_still_joins_the_thread(tmp_path, tiny_split, monkeypatch):
    import avs_engine.train.loop as loop

    def broken(*args, **kw):
        raise RuntimeError("step 1 failed")

    monkeypatch.setattr(loop, "accumulate_gradients", broken)
    with pytest.raises(RuntimeError, match="step 1 failed"):
        train(build_model("tiny").config, _recipe(), tiny_split, None, tmp_path, progress=False, log=lambda s: None)
    assert _no_batch_threads()


def test_prefetching_gives_the_same_weights_bit_for_bit(tmp_path, tiny_split):
    """Dropout is active (freeze=()); the batches and the generators' draws are the same."""
    quiet = dict(progress=False, log=lambda s: None)
    for workers in (0, 2):
        train(build_model("tiny").config, _recipe(workers=workers), tiny_split, None, tmp_path / f"w{workers}", **quiet)
    a = torch.load(tmp_path / "w0" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "w2" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def fake_pinning(monkeypatch):
    """``Tensor.pin_memory`` needs CUDA: record the calls and return a copy (as pinning does)."""
    pinned_ptrs = []

    def pin_memory(self, *args, **kw):
        out = self.clone()
        pinned_ptrs.append(out.data_ptr())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    return pinned_ptrs


def test_cuda_batches_are_pinned_in_the_background(tiny_split, fake_pinning, monkeypatch):
    import avs_engine.train.input_pipeline as ip

    pinned_in = []
    monkeypatch.setattr(ip, "pinned", lambda batch: pinned_in.append(threading.current_thread().name) or pinned(batch))
    with batch_source(tiny_split, BATCHES[:2], workers=1, pin=True) as source:
        got = list(source)
    assert pinned_in == ["avs-train-batches"] * 2  # not on the main thread
    assert len(fake_pinning) == 3 * 2  # images, log-mel, masks of each batch
    for idx, batch in zip(BATCHES, got):
        assert all(torch.is_tensor(x) for x in batch[:3]) and isinstance(batch.valid, np.ndarray)
        assert {x.data_ptr() for x in batch[:3]} <= set(fake_pinning)
        assert _equal(batch, host_batch(tiny_split, idx))
    with batch_source(tiny_split, BATCHES[:1], workers=0, pin=True) as source:  # inline: pinned too
        assert torch.is_tensor(next(source).images)


def test_a_cpu_run_pins_nothing(tmp_path, tiny_split, monkeypatch):
    def refuse(self, *a, **kw):
        raise AssertionError("pin_memory on a CPU run")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)
    train(build_model("tiny").config, _recipe(steps_per_epoch=1), tiny_split, None, tmp_path, progress=False, log=lambda s: None)


def test_pinned_batches_are_copied_non_blocking_and_give_the_same_loss(tiny_split, fake_pinning, monkeypatch):
    cfg = _recipe()
    model = build_model("tiny", seed=0)
    host = host_batch(tiny_split, [0, 1])
    torch.manual_seed(0)
    ref = accumulate_gradients(model, host, cfg, torch.device("cpu"))
    copies = []
    to = torch.Tensor.to

    def recording(self, *args, **kw):
        copies.append(kw.get("non_blocking"))
        return to(self, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "to", recording)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = accumulate_gradients(model, pinned(host), cfg, torch.device("cpu"))
    assert torch.equal(loss, ref)
    assert copies.count(True) >= 3  # images, log-mel, masks: asynchronous


# -- one decode per video per step ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streaming_split(tmp_path_factory):
    """Three generated clips in AVSBench's S4 layout on disk, read back video by video."""
    from avs_engine.data import StreamingSplit
    from avs_engine.data.avsbench import AVSBenchDataset, write_split
    from avs_engine.data.generator import generate_clip, split_seeds

    root = tmp_path_factory.mktemp("avsbench")
    write_split(root, "s4", "val", [generate_clip(s) for s in split_seeds("val", 3)])
    return StreamingSplit(AVSBenchDataset(root, "s4", "val"), 64)


@pytest.mark.parametrize("workers", [1, 3])
def test_each_video_is_decoded_once_per_step(streaming_split, monkeypatch, workers):
    ds = streaming_split.dataset
    read = []
    getitem = type(ds).__getitem__
    monkeypatch.setattr(type(ds), "__getitem__", lambda self, i: read.append(i) or getitem(self, i))
    batches = [np.array([0, 1, 2]), np.array([2, 0, 1])]
    with BatchPrefetcher(streaming_split, batches, workers=workers) as source:
        got = list(source)
    # at most once per video and step (a thread keeps the video it read last, so the second step may
    # find one); reading frames, log-mel and masks each for the whole batch read every video 3 times
    assert set(read) == {0, 1, 2} and len(read) <= 6 and max(read.count(v) for v in read) <= 2, read
    for idx, batch in zip(batches, got):
        assert _equal(batch, host_batch(streaming_split, idx))


# -- checkpoints without moving the model -------------------------------------------------------------------


def test_checkpoints_do_not_move_the_model(tmp_path, tiny_split, monkeypatch):
    moved = []
    to, cpu = torch.nn.Module.to, torch.nn.Module.cpu
    monkeypatch.setattr(torch.nn.Module, "cpu", lambda self, *a, **kw: moved.append(("cpu", type(self).__name__)) or cpu(self))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **kw: moved.append(("to", type(self).__name__)) or to(self, *a, **kw))
    from avs_engine.train import checkpoints

    ptrs = {}
    write_best = checkpoints.write_best

    def spy(model, state, out, meta):
        ptrs["before"] = [p.data_ptr() for p in model.parameters()]
        calls = len(moved)
        path = write_best(model, state, out, meta)
        assert len(moved) == calls  # no .to / .cpu while writing
        ptrs["after"] = [p.data_ptr() for p in model.parameters()]
        ptrs["device"] = {p.device for p in model.parameters()}
        return path

    import avs_engine.train.loop as loop

    monkeypatch.setattr(loop, "write_best", spy)
    res = train(build_model("tiny").config, _recipe(epochs=2, steps_per_epoch=1), tiny_split, tiny_split, tmp_path,
                progress=False, log=lambda s: None)
    assert ptrs and ptrs["before"] == ptrs["after"] and ptrs["device"] == {torch.device("cpu")}
    assert [m for m in moved if m[1] == "STBAVA"] == [("to", "STBAVA")]  # placed on the device once, never moved back
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "last.pt").is_file() and res.best_bundle


def test_host_state_dict_copies_device_tensors_only():
    from avs_engine.train.checkpoints import host_state_dict

    model = torch.nn.Linear(3, 2)
    sd = host_state_dict(model)
    assert sd["weight"].data_ptr() == model.weight.data_ptr()  # on a CPU: no copy
    assert not sd["weight"].requires_grad


# -- audio pretraining on the chosen device --------------------------------------------------------------


def test_audio_pretraining_gets_the_training_device(tmp_path, monkeypatch):
    import avs_engine.train.audio_pretrain as ap
    from avs_engine.train.api import run_training

    seen = []

    class Stop(Exception):
        pass

    def fake(cfg, split, steps, batch, lr=1e-3, seed=0, log=print, device="cpu"):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(ap, "pretrain_audio", fake)
    with pytest.raises(Stop):
        run_training(config="tiny", generated=True, cache_dir=tmp_path / "cache", device="cpu", out_dir=tmp_path / "run",
                     progress=False, log=lambda s: None,
                     overrides=dict(audio_pretrain_steps=2, generated_train=2, generated_val=1))
    assert seen == [torch.device("cpu")]


def test_audio_pretraining_on_a_device_is_the_cpu_run(tiny_split):
    from avs_engine.train.audio_pretrain import pretrain_audio

    cfg = build_model("tiny", seed=0).config.audio
    a = pretrain_audio(cfg, tiny_split, steps=3, batch=4, log=lambda s: None)
    b = pretrain_audio(cfg, tiny_split, steps=3, batch=4, log=lambda s: None, device=torch.device("cpu"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].device.type == "cpu" for k in a)
