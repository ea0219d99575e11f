"""Observed convergence orders: how fast an error falls with the grid step.

For errors ``e_k`` measured at steps ``dt_k``, the order between two successive steps is
``log(e_k / e_{k+1}) / log(dt_k / dt_{k+1})`` (``log2`` of the error ratio for halved steps), and
the fitted order is the least-squares slope of ``log e`` against ``log dt``. An error of 0 or NaN
makes the orders that use it NaN (an exact method has no order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(dts: Sequence[float], errors: Sequence[float]) -> None:
    if len(dts) != len(errors):
        raise ValueError(f"{len(dts)} grid steps but {len(errors)} errors: give one error per dt")
    if any(not dt > 0 for dt in dts):
        raise ValueError(f"grid steps must be positive, got {list(dts)}")


def _usable(e: float) -> bool:
    return math.isfinite(e) and e > 0


def observed_orders(dts: Sequence[float], errors: Sequence[float]) -> list[float]:
    """Order between each pair of successive ``(dt, error)``: ``len(dts) - 1`` values (NaN
    where an error is 0 or NaN, or two steps are equal)."""
    _check(dts, errors)
    out = []
    for (d0, e0), (d1, e1) in zip(zip(dts, errors, strict=True),
                                  zip(dts[1:], errors[1:], strict=True), strict=False):
        ok = _usable(e0) and _usable(e1) and d0 != d1
        out.append(math.log(e0 / e1) / math.log(d0 / d1) if ok else float("nan"))
    return out


def fitted_order(dts: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(dt)`` over all points; NaN with
    fewer than two distinct steps or any error 0 or NaN."""
    _check(dts, errors)
    if len(set(dts)) < 2 or not all(_usable(e) for e in errors):
        return float("nan")
    x = [math.log(d) for d in dts]
    y = [math.log(e) for e in errors]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return (sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
            / sum((a - mx) ** 2 for a in x))


__all__ = ["fitted_order", "observed_orders"]
