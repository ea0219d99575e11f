"""Argument checks shared by the whole package.

Every public entry point validates its inputs with these helpers so that a bad
argument fails early with a message that names the argument and the problem.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Any

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
    # One reduction first (NaN and inf propagate through a sum; only an overflow of finite
    # values makes it non-finite too): the element-wise mask is built only when it fails.
    if x.numel() > 1024 and bool(torch.isfinite(x.detach().sum())):
        return
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


def as_dt(name: str, value: Any) -> float:
    """Return ``value`` as a positive finite Python float (``name`` is used in errors)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {list(value.shape)}")
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
    check_positive(name, value)
    return float(value)


def as_int(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` as a Python int ``>= minimum`` (``name`` is used in errors)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must be an integer, got a tensor of dtype {value.dtype}")
        value = value.item()
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_float_1d(name: str, x: Any, dtype: torch.dtype | None = None) -> Tensor:
    """Convert ``x`` to a 1-D floating tensor (integers are converted to ``dtype``/default)."""
    t = torch.as_tensor(x)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return check_tensor(name, t, ndim=1)


def as_index_1d(name: str, x: Any, device: torch.device) -> Tensor:
    """Convert ``x`` to a 1-D int64 tensor on ``device``; floats and bools are rejected."""
    t = torch.as_tensor(x)
    if t.numel() == 0 and t.is_floating_point():  # torch.as_tensor([]) is float32
        t = t.long()
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype, got {t.dtype}")
    check_tensor(name, t, ndim=1)
    return t.to(device=device, dtype=torch.int64)


def first_bad(mask: Tensor) -> int:
    """Index of the first ``True`` of a 1-D mask (for error messages)."""
    return int(mask.nonzero()[0, 0])
