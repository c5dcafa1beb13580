"""What the numbers were measured on: CPU, cores, memory, GPU and driver, library versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

# Distribution names whose versions every report carries (absent ones are reported as such).
_PACKAGES = (
    "avs-engine", "numpy", "av", "torch", "torchvision", "segment-anything", "onnx", "onnxruntime",
    "onnxruntime-gpu", "tensorrt", "cuda-python", "matplotlib",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[dict]:
    """Name, memory and driver of each NVIDIA GPU, from nvidia-smi (no CUDA context created)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, mem, driver = (x.strip() for x in line.split(",")[:3])
        gpus.append({"name": name, "memory": {"value": round(float(mem) / 1024, 1), "unit": "GiB"}, "driver": driver})
    return gpus


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if out["avs-engine"] == "not installed":  # running from a source tree
        out["avs-engine"] = "source tree (not installed)"
    # torch's CUDA build, without importing torch when it is absent.
    if importlib.util.find_spec("torch") is not None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch.cuda"] = str(torch.version.cuda)
        out["torch.threads"] = str(torch.get_num_threads())
    return out


def machine_info() -> dict:
    """The machine: CPU model, cores (all, and usable by this process), memory, GPUs, OS, load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = _mem_total_gib()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory": {"value": mem, "unit": "GiB"} if mem is not None else "unknown",
        "gpus": _gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_1min": {"value": round(os.getloadavg()[0], 2), "unit": "runnable tasks"},
    }


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
