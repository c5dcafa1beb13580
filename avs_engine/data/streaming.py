"""An AVSBench split read from disk item by item, with the interface of ``PreparedSplit``.

For real AVSBench at 1024x1024 a prepared copy would not fit in memory;
this reads each video's files when asked. The video read last is kept, one per
thread: asking for a video's frames, log-mel and masks one after the other
decodes it once, also when the training input pipeline's threads read other
videos at the same time.
"""

from __future__ import annotations

import threading

import numpy as np

from ..io.preprocess import prepare_frames
from .avsbench import AVSBenchDataset, Sample


class StreamingSplit:
    def __init__(self, dataset: AVSBenchDataset, img_size: int, resize: str = "avsbench") -> None:
        self.dataset, self._img_size, self.resize = dataset, img_size, resize
        self.names = [e.name for e in dataset.entries]
        self._last = threading.local()  # .sample: (index, Sample) read last on this thread
        valid = np.zeros((len(dataset), dataset.T), bool)
        valid[:, : dataset.n_masks] = True
        self.mask_valid = valid
        self._burst = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def T(self) -> int:
        return self.dataset.T

    @property
    def img_size(self) -> int:
        return self._img_size

    @property
    def burst(self) -> np.ndarray:
        if self._burst is None:
            b = np.zeros((len(self), self.T), bool)
            for i, n in enumerate(self.names):
                flags = self.dataset.generated.get(n, {}).get("burst")
                if flags:
                    b[i, : len(flags)] = flags[: self.T]
            self._burst = b
        return self._burst

    def _sample(self, i: int) -> Sample:
        last = getattr(self._last, "sample", None)
        if last is None or last[0] != i:
            last = self._last.sample = (i, self.dataset[i])
        return last[1]

    def image_input(self, i: int) -> np.ndarray:
        return prepare_frames(self._sample(i).frames, self._img_size, self.resize)

    def log_mel_input(self, i: int) -> np.ndarray:
        return self._sample(i).log_mel

    def masks(self, i: int) -> np.ndarray:
        return self._sample(i).masks
