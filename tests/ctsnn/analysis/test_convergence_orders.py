"""The order arithmetic of ``python -m ctsnn.analysis.convergence_orders`` (the study itself runs
the configurations of ``tests/ctsnn/engine/test_convergence.py``, tested there)."""

from __future__ import annotations

import pytest

from ctsnn.analysis import convergence_orders as co


def test_halving_and_spread() -> None:
    assert co.halving(1e-3, 3) == (1e-3, 5e-4, 2.5e-4)
    assert co.spread(1.0, 3, 0.5) == (1.0, 1.5, 2.0)


def test_orders_of_a_second_order_error() -> None:
    dts = co.halving(0.1, 4)
    errs = [3.0 * dt**2 for dt in dts]
    assert co.orders(errs) == pytest.approx([2.0, 2.0, 2.0])
    assert co.fitted(dts, errs) == pytest.approx(2.0)
    assert co.fmt_orders([2.0, 1.5]) == "2.00, 1.50"
