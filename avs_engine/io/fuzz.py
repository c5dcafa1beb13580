"""Fuzz target for the media layer: the code every upload passes, under the upload's open policy.

One input = the bytes of one file. :func:`check_media` runs it through
``probe`` -> ``iter_clips`` (clip windows: video decode, 1 fps sampling,
squash to 32x32, audio decode, log-mel) with the strict open policy (as
``avs-serve`` opens uploads). The right answers are clips whose arrays have
the documented shapes and finite values, or one :class:`~avs_engine.errors.AvsError`
whose message is one line naming the file. Anything else (another exception,
a crash, a hang, a memory blow-up) is a finding.

Run it (``pip install atheris``; Python <= 3.12) as a libFuzzer program; its
flags pass through::

    python -m avs_engine.io.fuzz CORPUS_DIR [SEED_DIR...] -max_total_time=3600 \\
        -timeout=20 -rss_limit_mb=3072 -max_len=65536 -artifact_prefix=findings/

Coverage comes from atheris' instrumentation of this package's Python code
(FFmpeg's C code is not instrumented: the fuzzer steers by which of our
branches a file reaches). ``docs/media.md`` lists what it found.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np

from ..errors import AvsError
from . import open_policy
from .clips import iter_clips
from .probe import probe

# Bounds on what one input may make the target do (beyond them the input is cut short, not reported): a
# fuzzed header can claim hours of video; decoding them is slow, not wrong.
MAX_CLIPS = 4
FRAME_SIZE = (32, 32)

_dir: str | None = None


def check_media(path: str) -> int:
    """Run ``path`` through the media layer; returns the number of clips made. Raises AssertionError on a wrong
    answer (and lets any unexpected exception through): what the fuzzer reports."""
    with open_policy.strict(path):
        try:
            info = probe(path)
            clips = iter_clips(path, T=5, allow_silent=True, info=info, frame_size=FRAME_SIZE)
            n = 0
            try:
                for clip in clips:
                    T = clip.window.length
                    assert clip.frames.shape == (T, FRAME_SIZE[1], FRAME_SIZE[0], 3), clip.frames.shape
                    assert clip.frames.dtype == np.uint8
                    assert clip.log_mel.shape == (T, 1, 96, 64) and clip.log_mel.dtype == np.float32
                    assert np.isfinite(clip.log_mel).all(), "log-mel has NaN or inf"
                    n += 1
                    if n >= MAX_CLIPS:
                        break
            finally:
                clips.close()
            assert info.duration_s > 0 and math.isfinite(info.duration_s), info
            return n
        except AvsError as e:
            msg = str(e)
            assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
            assert msg.startswith(path), f"error message does not name the file: {msg!r}"
            return 0


def one_input(data: bytes) -> None:
    """libFuzzer's entry point: ``data`` written to a file (the code under test reads paths) and checked."""
    global _dir
    if _dir is None:
        _dir = tempfile.mkdtemp(prefix="avs-fuzz-")
    path = os.path.join(_dir, "input.bin")
    with open(path, "wb") as f:
        f.write(data)
    check_media(path)


def main(argv: list[str]) -> None:
    import atheris

    import av.logging

    av.logging.set_level(None)   # FFmpeg's own complaints about broken input would flood the output
    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
