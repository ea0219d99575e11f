"""Work-precision and convergence plots of a comparison result."""

from __future__ import annotations

import math

import pytest

from ctsnn.analysis import LayerDifference, RunSummary, TimeModeComparison
from ctsnn.plot import convergence_plot, work_precision_plot


def summary(time, dt, method, wall, err):
    layer = LayerDifference(10, 10, 0, 0, err, math.sqrt(err))
    return RunSummary(time, dt, method, wall, (layer,), None, None, None)


def comparison():
    runs = (summary("discrete", 1e-3, None, 0.1, 4e-4), summary("discrete", 5e-4, None, 0.2, 2e-4),
            summary("discrete", 2.5e-4, None, 0.4, 1e-4),
            summary("continuous", 1e-3, "rk4", 1.0, 1e-8),
            summary("continuous", 5e-4, "rk4", 2.0, 6.25e-10),
            summary("continuous", 2.5e-4, "rk4", 4.0, 0.0))
    exact = (summary("continuous", 1e-3, "exact", 0.5, 1e-16),
             summary("continuous", 5e-4, "exact", 0.9, 2e-16))
    return TimeModeComparison(runs=runs + exact, reference=runs[5], tau=0.01, simulations={})


def test_work_precision_plot(tmp_path):
    fig = work_precision_plot(comparison())
    (ax,) = fig.get_axes()
    assert ax.get_xlabel() == "wall time per run (s)"
    assert ax.get_ylabel() == "mean spike-time error (s)"
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "1 run(s) with error 0 not shown" in ax.get_title()
    disc, cont, _ = ax.get_lines()
    assert list(disc.get_xdata()) == [0.4, 0.2, 0.1] and list(cont.get_ydata()) == [6.25e-10, 1e-8]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "discrete", "continuous, rk4", "continuous, exact"]
    fig.savefig(tmp_path / "wp.png", dpi=50)
    d = work_precision_plot(comparison(), metric="distance").get_axes()[0]
    assert d.get_ylabel() == "van Rossum distance"
    with pytest.raises(ValueError, match="metric"):
        work_precision_plot(comparison(), metric="rmse")


def test_convergence_plot_shows_orders(tmp_path):
    fig = convergence_plot(comparison())
    (ax,) = fig.get_axes()
    assert ax.get_xlabel() == "grid step dt (s)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["discrete (order 1.00)", "continuous, rk4 (order 4.00)",
                          "continuous, exact (no order: exact to rounding)"]
    assert labels[3:] == ["slope 1", "slope 2"]
    fig.savefig(tmp_path / "cv.png", dpi=50)
