"""The order arithmetic of ``python -m ctsnn.analysis.convergence_orders`` (the study itself runs
the configurations of ``tests/ctsnn/engine/test_convergence.py``, tested there)."""

from __future__ import annotations

import math

import pytest

from ctsnn.analysis import convergence_orders as co
from ctsnn.analysis.orders import fitted_order, observed_orders


def test_halving_and_spread() -> None:
    assert co.halving(1e-3, 3) == (1e-3, 5e-4, 2.5e-4)
    assert co.spread(1.0, 3, 0.5) == (1.0, 1.5, 2.0)


def test_orders_of_a_second_order_error() -> None:
    dts = co.halving(0.1, 4)
    errs = [3.0 * dt**2 for dt in dts]
    assert observed_orders(dts, errs) == pytest.approx([2.0, 2.0, 2.0])
    assert fitted_order(dts, errs) == pytest.approx(2.0)
    assert co.fmt_orders([2.0, 1.5]) == "2.00, 1.50"


def test_orders_of_uneven_steps_and_degenerate_errors() -> None:
    dts = [1e-2, 3e-3, 1e-3]
    errs = [5.0 * dt**1.5 for dt in dts]
    assert observed_orders(dts, errs) == pytest.approx([1.5, 1.5])
    assert fitted_order(dts, errs) == pytest.approx(1.5)
    assert all(math.isnan(o) for o in observed_orders(dts, [1.0, 0.0, 1.0]))
    assert math.isnan(fitted_order(dts, [1.0, float("nan"), 1.0]))
    assert math.isnan(fitted_order([1e-3, 1e-3], [1.0, 2.0]))
    with pytest.raises(ValueError, match="one error per dt"):
        observed_orders(dts, errs[:2])
    with pytest.raises(ValueError, match="positive"):
        fitted_order([1e-3, -1e-3], [1.0, 2.0])
