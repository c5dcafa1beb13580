"""Peak memory: host RSS from /proc (no psutil), GPU from the torch allocator.

Linux keeps a resident-set high-water mark per process (``VmHWM`` in
``/proc/<pid>/status``); writing ``5`` to ``/proc/self/clear_refs`` resets it
to the current RSS (Linux >= 4.0), which gives a peak per stage. Where the
reset is refused the peak is the process's since it started, and the report
says so.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

MiB = 1024 * 1024


def _status_kibs(pid: int | str, *fields: str) -> dict[str, int] | None:
    """The named kB fields of /proc/<pid>/status (those present); None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            out[name] = int(rest.split()[0])  # "VmHWM:    123456 kB"
    return out


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    return (_status_kibs(pid, field) or {}).get(field)


def current_rss_bytes(pid: int | str = "self") -> int | None:
    kib = _status_kib("VmRSS", pid)
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark (since start or the last :func:`reset_peak_rss`)."""
    kib = _status_kib("VmHWM")
    if kib is None:  # no /proc: getrusage's maximum (kilobytes on Linux)
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class TorchCudaMemory:
    """Peak bytes allocated by torch's caching allocator on one device, resettable."""

    source = "torch.cuda.max_memory_allocated (caching allocator)"

    def __init__(self, torch_module, device) -> None:
        self._cuda = torch_module.cuda
        self._device = device

    def reset(self) -> None:
        self._cuda.synchronize(self._device)
        self._cuda.reset_peak_memory_stats(self._device)

    def peak_bytes(self) -> int:
        self._cuda.synchronize(self._device)
        return int(self._cuda.max_memory_allocated(self._device))


def gpu_memory_for(runner) -> TorchCudaMemory | None:
    """A GPU peak-memory reader for torch runners on CUDA; None otherwise."""
    device = getattr(runner, "device", None)
    torch_module = getattr(runner, "_torch", None)
    if torch_module is not None and getattr(device, "type", None) == "cuda":
        return TorchCudaMemory(torch_module, device)
    return None


class RssSampler:
    """Polls another process's VmRSS in a thread: ``samples`` = [(seconds since start, bytes)];
    ``high_water``: the largest VmHWM read (bytes; 0 if none), the process's own peak up to the
    last poll. (getrusage's ``ru_maxrss`` of a child starts from its parent's high-water mark:
    Linux carries it across exec.)"""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, int]] = []
        self.high_water = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="avs-bench-rss")
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            kib = _status_kibs(self.pid, "VmRSS", "VmHWM")
            if not kib or "VmRSS" not in kib:  # the process is gone
                return
            self.samples.append((time.perf_counter() - self._t0, kib["VmRSS"] * 1024))
            self.high_water = max(self.high_water, kib.get("VmHWM", 0) * 1024)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
