"""Field checks of the paper configurations (:class:`~ctsnn.papers.dcls.DCLSConfig`,
:class:`~ctsnn.papers.delrec.DelRecConfig`): every error names the field that is wrong and says
what it must be."""

from __future__ import annotations

import math
from typing import Any

from .._checks import check_choice


def check_int_field(name: str, value: Any, *, minimum: int = 1) -> None:
    """``value`` must be a Python ``int`` (not ``bool``, not ``8.0``) ``>= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} "
                        f"({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_real_field(name: str, value: Any, *, low: float = 0.0, allow_low: bool = False,
                     high: float = math.inf, allow_high: bool = False) -> None:
    """``value`` must be a finite real number (not ``bool``) in the interval from ``low`` to
    ``high``, the ends included when ``allow_low`` / ``allow_high``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    left, right = ("[" if allow_low else "("), ("]" if allow_high else ")")
    interval = f"{left}{low:g}, {high:g}{right}"
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, in {interval}; got {value!r}")
    ok_low = value >= low if allow_low else value > low
    ok_high = value <= high if allow_high else value < high
    if not (ok_low and ok_high):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_bool_field(name: str, value: Any) -> None:
    """``value`` must be ``True`` or ``False`` (not ``0``/``1``, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_choice_field(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r} "
                        f"({type(value).__name__})")
    check_choice(name, value, choices)


__all__ = ["check_bool_field", "check_choice_field", "check_int_field", "check_real_field"]
