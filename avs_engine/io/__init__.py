"""Media input: probe, per-second frames, 16 kHz audio, VGGish log-mel, clip windows.

numpy + PyAV only (no torch, no OpenCV). Every bad input raises a one-line
:class:`~avs_engine.errors.MediaError` (``NoAudioError`` for a missing audio
track) naming the file.
"""

from .audio import SAMPLE_RATE, iter_audio_16k, read_audio_16k
from .clips import Clip, Window, WindowPlan, iter_clips, plan_windows
from .frames import frame_index, iter_second_frames, n_seconds
from .logmel import log_mel_spectrogram, mel_matrix, silent_examples, vggish_examples
from .probe import MediaInfo, probe

__all__ = [
    "MediaInfo", "probe",
    "frame_index", "n_seconds", "iter_second_frames",
    "SAMPLE_RATE", "iter_audio_16k", "read_audio_16k",
    "log_mel_spectrogram", "mel_matrix", "vggish_examples", "silent_examples",
    "Window", "WindowPlan", "Clip", "plan_windows", "iter_clips",
]
