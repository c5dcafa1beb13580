"""The torch device a name (cpu, cuda, cuda:N) asks for, checked: for the torch backend and training alike."""

from __future__ import annotations

from ..errors import BackendError


def torch_device(torch, name: str):
    """``name`` (cpu, cuda, cuda:N) as a ``torch.device``, or one :class:`BackendError` line
    when this machine has no such device (not a CUDA error at the first tensor moved there)."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BackendError(f"'{name}' is not a device (cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device '{name}' requested but CUDA is not available here (use --device cpu)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            have = ", ".join(f"cuda:{i}" for i in range(n))
            raise BackendError(f"device '{name}' requested but this machine has {n} CUDA device(s) ({have})")
    return dev
