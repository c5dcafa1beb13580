"""The training input pipeline: each step's batch is built on the host while the model runs.

The training loop asks for the batches of its steps in order. With ``workers >= 1`` a background
thread (:class:`BatchPrefetcher`) walks the same index lists and builds each batch ahead of the step
that needs it, at most ``depth`` batches ahead (a bounded queue: host memory holds the step's
batch, ``depth`` queued ones and the one being built); with ``workers > 1`` the videos of a batch are decoded on that many threads. With
``workers = 0`` the main thread builds each batch between steps, as before.

Each video is read once per step: :func:`sample_arrays` asks the split for its frames, log-mel and
masks one right after the other, and a split that reads from disk keeps the video it decoded last
per thread (``data.StreamingSplit``), so the three calls decode it once.

On CUDA the batch's arrays go to page-locked (pinned) host memory in the background thread, so the
step's copies to the device are asynchronous (``non_blocking=True``); the caching host allocator
keeps a pinned block alive until the copy that reads it is done. On a CPU nothing is pinned and the
batch stays numpy.

What is deterministic: the batches and their order. Building them draws no random numbers and the
arrays do not depend on which thread built them, so a run with prefetching gives bit-identical
weights to one without on a CPU (tested).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, NamedTuple

import numpy as np


class HostBatch(NamedTuple):
    """One step's clips on the host: numpy, or pinned torch tensors for the arrays copied to CUDA.

    images float32 [B,T,3,S,S], log_mel float32 [B,T,1,96,64], masks bool [B,T,224,224],
    valid bool [B,T] (always numpy: the loss's frames are found on the host)."""

    images: object
    log_mel: object
    masks: object
    valid: np.ndarray


def batch_indices(n: int, batch_clips: int, seed: int, steps_per_epoch: int, start: int, total: int) -> Iterator[np.ndarray]:
    """Clip indices [batch_clips] of steps ``start .. total-1``: per epoch a permutation from
    ``numpy.random.default_rng([seed, epoch])`` (wrapped when an epoch has more steps than clips)."""
    order, epoch_of_order = None, -1
    for step in range(start, total):
        epoch, k = divmod(step, steps_per_epoch)
        if epoch != epoch_of_order:
            order = np.random.default_rng([seed, epoch]).permutation(max(n, steps_per_epoch * batch_clips)) % n
            epoch_of_order = epoch
        yield order[k * batch_clips:(k + 1) * batch_clips]


def sample_arrays(split, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video ``i``: image float32 [T,3,S,S], log_mel float32 [T,1,96,64], masks bool [T,224,224].

    The three reads follow each other on one thread: a split that decodes a video once for all
    three (``StreamingSplit``) does so here."""
    return split.image_input(i), split.log_mel_input(i), split.masks(i)


def host_batch(split, idx, pool: ThreadPoolExecutor | None = None) -> HostBatch:
    """The clips ``idx`` of ``split`` as numpy arrays (:class:`HostBatch`), in the order of ``idx``;
    ``pool``: decode the videos on its threads (the result is the same)."""
    per = list(pool.map(lambda i: sample_arrays(split, i), idx)) if pool is not None else [sample_arrays(split, i) for i in idx]
    images = np.stack([p[0] for p in per])
    log_mel = np.stack([p[1] for p in per])
    masks = np.stack([p[2] for p in per])
    valid = np.stack([np.asarray(split.mask_valid[i], bool) for i in idx])
    return HostBatch(images, log_mel, masks, valid)


def pinned(batch: HostBatch) -> HostBatch:
    """The batch's images, log-mel and masks as torch tensors in page-locked host memory, so that
    ``.to(cuda, non_blocking=True)`` is an asynchronous copy (needs CUDA)."""
    import torch

    def pin(a):
        return torch.from_numpy(np.ascontiguousarray(a)).pin_memory()

    return HostBatch(pin(batch.images), pin(batch.log_mel), pin(batch.masks), batch.valid)


class BatchPrefetcher:
    """Iterates ``host_batch(split, idx)`` for each ``idx`` of ``batches``, in that order, built by
    a background thread at most ``depth`` batches ahead.

    ``workers``: threads decoding the videos of a batch (1: the background thread itself).
    ``pin``: pinned tensors (:func:`pinned`), for CUDA. An exception in the background thread is
    raised (the same exception object, its message unchanged) by the ``next`` that would have
    returned that batch, once; the thread has ended by then. :meth:`close` (also on leaving a
    ``with`` block) stops the thread and joins it, whatever state it is in.
    """

    _POLL_S = 0.1  # how often a producer blocked on a full queue checks whether it was closed

    def __init__(self, split, batches: Iterable, *, depth: int = 2, workers: int = 1, pin: bool = False,
                 name: str = "avs-train-batches") -> None:
        if depth < 1 or workers < 1:
            raise ValueError(f"depth and workers must be >= 1, got {depth} and {workers}")
        self.split, self.batches, self.workers, self.pin = split, batches, workers, pin
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    # -- the background thread --

    def _produce(self) -> None:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="avs-train-decode") if self.workers > 1 else None
        try:
            for idx in self.batches:
                if self._stop.is_set():
                    return
                batch = host_batch(self.split, idx, pool)
                if self.pin:
                    batch = pinned(batch)
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as e:  # handed to the consumer, raised there
            self._put(("error", e))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _put(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False when closed meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=self._POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # -- the consumer (the training loop) --

    def __iter__(self) -> "BatchPrefetcher":
        return self

    def __next__(self) -> HostBatch:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "batch":
            return value
        self._finished = True
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the background thread and wait for it (it finishes the batch it is building)."""
        self._stop.set()
        while self._thread.is_alive():
            self._drain()  # a producer blocked on a full queue sees the stop flag within _POLL_S
            self._thread.join(timeout=self._POLL_S)
        self._drain()
        self._finished = True

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineBatches:
    """``workers = 0``: each batch built on the calling thread when asked (no prefetching)."""

    def __init__(self, split, batches: Iterable) -> None:
        self._it = (host_batch(split, idx) for idx in batches)

    def __iter__(self) -> "InlineBatches":
        return self

    def __next__(self) -> HostBatch:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    def __enter__(self) -> "InlineBatches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batch_source(split, batches: Iterable, *, workers: int = 1, depth: int = 2, pin: bool = False):
    """The batches of ``batches`` (index arrays), in order: prefetched by :class:`BatchPrefetcher`
    with ``workers >= 1``, built inline with 0. Use as a context manager (it joins its thread)."""
    if workers == 0:
        if pin:
            return _PinnedInline(split, batches)
        return InlineBatches(split, batches)
    return BatchPrefetcher(split, batches, depth=depth, workers=workers, pin=pin)


class _PinnedInline(InlineBatches):
    def __next__(self) -> HostBatch:
        return pinned(super().__next__())
