"""Where the learner trains: `auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, or
`cuda` / `cuda:N`. Asking for CUDA where there is none is a clear error, never a silent CPU run.
On the CPU the fused kernels (rl/native.py) and oneDNN paths apply; on CUDA plain PyTorch ops with
bf16 autocast where the GPU supports it. Weights published to actors are always CPU tensors
(checkpoints load with map_location="cpu")."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that cannot be used here."""


def resolve_device(spec: str = "auto") -> str:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {spec!r} requested, but torch sees no CUDA GPU (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}); use device auto or cpu, "
                "or install a CUDA build of the same torch version"
            )
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return f"cuda:{index}"
    raise DeviceError(f"unknown device {spec!r}: auto, cpu, cuda or cuda:N")


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast pays off on `device` (CUDA: compute capability 8.0+; CPU: always
    allowed, faster with AVX-512 BF16 / AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return True
