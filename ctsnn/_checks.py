"""Argument checks shared by the whole package.

Every public entry point validates its inputs with these helpers so that a bad
argument fails early with a message that names the argument and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def check_positive(name: str, value: float | Tensor, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0 (>= 0)."""
    if isinstance(value, Tensor):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite, got a tensor containing NaN or inf")
        bad = (value < 0) if allow_zero else (value <= 0)
        if bad.any():
            worst = value.detach().min().item()
            kind = "non-negative" if allow_zero else "positive"
            raise ValueError(f"{name} must be {kind}, got a tensor with minimum {worst!r}")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def check_finite(name: str, x: Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf, saying where the first one is."""
    finite = torch.isfinite(x)
    if not finite.all():
        idx = tuple(int(i) for i in (~finite).nonzero()[0].tolist())
        raise ValueError(f"{name} contains a non-finite value ({x[idx].item()!r}) at index {idx}")


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool = False,
) -> Tensor:
    """Check that ``x`` is a tensor of the given rank/shape (``None`` = any size) and dtype kind."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        if x.ndim != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, x.shape, strict=True)
        ):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        expected = ", ".join(map(repr, choices))
        raise ValueError(f"unknown {name} {value!r}; expected one of {expected}")
    return value
