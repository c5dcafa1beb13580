"""The fuzzer's seed corpus: small generated files of every kind the media tests use (each a few KB)."""

from __future__ import annotations

from pathlib import Path

from tests.media_craft import FULL_RANGE_601, HDR10, make_edit_list_mp4, make_size_change_ts, make_tagged_video
from tests.media_factory import make_empty_audio_track, make_silent_video, make_video, truncated_copy

# Findings of past fuzz runs that were fixed: kept as seeds (and as regression cases in tests/io/test_fuzz.py).
FINDINGS = Path(__file__).resolve().parent / "io" / "fuzz_findings"


def write_seeds(folder) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    small = {"seconds": 2, "fps": 5, "size": (48, 32), "sample_rate": 8000, "channels": 1}
    for suffix in (".mp4", ".mkv", ".avi", ".webm", ".mov"):
        make_video(folder / f"seed{suffix}", **small)
    make_video(folder / "stereo.mp4", seconds=2, fps=5, size=(48, 32), sample_rate=16000, channels=2)
    make_video(folder / "rotated.mp4", rotate_cw=90, **small)
    make_silent_video(folder / "silent.mp4", seconds=2, fps=5, size=(48, 32))
    make_empty_audio_track(folder / "empty_audio.mkv", seconds=1, fps=5, size=(48, 32))
    truncated_copy(folder / "seed.mp4", folder / "truncated.mp4", 0.6)
    make_size_change_ts(folder / "size_change.ts", sizes=((48, 32), (64, 48)), seconds_each=1.0, fps=5)
    make_edit_list_mp4(folder / "edit_list.mp4", hidden_s=0.4, shown_s=1.6, fps=5)
    make_tagged_video(folder / "hdr10.mp4", "libx265", "yuv420p10le", HDR10, seconds=1, fps=5, size=(64, 64))  # x265 under 64 px wide corrupts the heap
    make_tagged_video(folder / "mjpeg.mkv", "mjpeg", "yuvj420p", FULL_RANGE_601, seconds=1, fps=5, size=(48, 32),
                      fmt="matroska")
    for f in sorted(FINDINGS.glob("*")) if FINDINGS.is_dir() else []:
        (folder / f"finding-{f.name}").write_bytes(f.read_bytes())
    return sorted(folder.iterdir())
