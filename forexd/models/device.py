"""Where torch models run: CUDA when it is there, else the CPU.

``torch.cuda.is_available()`` asks the driver without creating a CUDA context, so calling
this before the runtime decides to spawn worker processes does not make ``fork`` unsafe.

Resolution happens once per name and process (cached): the answer cannot change while the
process lives, and asking again would cost a driver query per training cycle. Only torch
model kinds call this (``ModelSpec.uses_torch``), so gradient boosting and the other
scikit-learn kinds never import torch, whatever ``device`` says.
"""

from __future__ import annotations

import functools
import importlib.util

from forexd.models.errors import ModelError


@functools.cache  # errors are raised, not cached: a bad name fails every time
def choose_device(preferred: str = "auto") -> str:
    """Resolve a device name for torch models.

    Args:
        preferred: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ModelError: an unknown name, or CUDA asked for where torch or a GPU is missing.
    """
    name = preferred.strip().lower()
    if name == "cpu":
        return "cpu"
    if name not in {"auto", "cuda"} and not name.startswith("cuda:"):
        raise ModelError(f"device {preferred!r} is not one of auto, cpu, cuda, cuda:N")
    if importlib.util.find_spec("torch") is None:
        if name == "auto":
            return "cpu"
        raise ModelError(
            f"device {preferred!r} needs PyTorch with CUDA; install it or use device='cpu'"
        )
    import torch

    if not torch.cuda.is_available():
        if name == "auto":
            return "cpu"
        raise ModelError(f"device {preferred!r}: no CUDA GPU is available; use device='cpu'")
    if name == "auto":
        return "cuda"
    if name.startswith("cuda:"):
        index = name.removeprefix("cuda:")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ModelError(
                f"device {preferred!r}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0"
            )
    return name


def device_key(device: str) -> str:
    """The semaphore key of a device: ``cuda`` and ``cuda:0`` are the same GPU.

    The one normalisation of device names for every per-device semaphore (the daemon's
    compute pool and ``forexd models compare``): keyed by the raw string, ``cuda`` and
    ``cuda:0`` would get two semaphores and two jobs would share one GPU.

    Raises:
        ModelError: not ``cpu``, ``cuda`` or ``cuda:N``.
    """
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda":
        return "cuda:0"
    index = name.removeprefix("cuda:")
    if name.startswith("cuda:") and index.isdigit():
        return f"cuda:{int(index)}"
    raise ModelError(f"device {device!r} is not one of cpu, cuda, cuda:N")
