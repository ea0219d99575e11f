"""One call to compare time modes, grid steps and solvers on the same network.

:func:`compare_time_modes` runs one network (same weights, delays and inputs) in discrete and
in continuous time at several grid steps and measures every run against a reference run:
per layer, the spike-time error of matched spikes, the spike-count differences and the van
Rossum distance; the output and accuracy differences (with a readout / labels); the wall time
of each run; and the observed convergence order of the errors over the grid steps.
:func:`work_precision` does the same over any ``(time, dt, method)`` settings, timing each run
several times, for work-precision diagrams (:func:`ctsnn.plot.work_precision_plot`).

Both return a :class:`TimeModeComparison`; ``print(cmp.table())`` shows it as markdown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import as_dt, as_int, check_positive, check_tensor
from ..engine import TIME_MODES
from ..models import NeuronModel
from ..network import Layer
from ..spikes import Spikes
from .orders import fitted_order
from .spike_distance import van_rossum_distance
from .spike_matching import compare_spikes
from .time_modes import TimeModeRun, layer_results, parse_setting, run_time_modes

PREDICTIONS = ("argmax", "first_spike")
#: Spike-time errors (s) at or below this are rounding noise: such runs are exact and have no
#: convergence order (:meth:`TimeModeComparison.order`).
EXACT_BELOW = 1e-12


@dataclass(frozen=True)
class LayerDifference:
    """One layer of one run against the same layer of the reference run.

    Attributes:
        n_spikes: spikes of this run. n_reference: spikes of the reference run.
        count_difference: ``n_spikes - n_reference``.
        abs_count_difference: sum over (sample, neuron) of ``|count - reference count|``.
        time_error: mean distance (s) from each spike to the nearest reference spike of the same
            neuron and sample, averaged per neuron then over neurons
            (:func:`~ctsnn.analysis.spike_time_error`); NaN when no neuron spikes in both runs.
        distance: population van Rossum distance (:func:`~ctsnn.analysis.van_rossum_distance`,
            dimensionless), mean over samples.
    """

    n_spikes: int
    n_reference: int
    count_difference: int
    abs_count_difference: int
    time_error: float
    distance: float


@dataclass(frozen=True)
class RunSummary:
    """One run of a comparison, measured against the reference run.

    Attributes:
        time: ``"continuous"`` or ``"discrete"``. dt: grid step (s).
        method: integrator asked for (``None``: :func:`ctsnn.simulate`'s default).
        wall_s: wall-clock time of the simulation (s; the fastest of the repeats).
        layers: one :class:`LayerDifference` per layer, input order.
        output_difference: ``max |output - reference output|`` over samples and outputs (units
            of the readout), ``None`` without a readout.
        accuracy: fraction of samples whose prediction equals the label (``None`` without
            labels). accuracy_difference: ``accuracy - reference accuracy``.
    """

    time: str
    dt: float
    method: str | None
    wall_s: float
    layers: tuple[LayerDifference, ...]
    output_difference: float | None
    accuracy: float | None
    accuracy_difference: float | None

    @property
    def setting(self) -> tuple[str, float, str | None]:
        """``(time, dt, method)``."""
        return self.time, self.dt, self.method


@dataclass(frozen=True)
class TimeModeComparison:
    """Result of :func:`compare_time_modes` / :func:`work_precision`.

    Attributes:
        runs: one :class:`RunSummary` per setting, in the order run (the reference run
            included when it is one of the settings).
        reference: the summary of the reference run (all its differences are 0).
        tau: the van Rossum time constant used (s).
        simulations: the :func:`ctsnn.simulate` result of every run, keyed by
            ``(time, dt, method)`` (the reference's too), for figures.
    """

    runs: tuple[RunSummary, ...]
    reference: RunSummary
    tau: float
    simulations: dict[tuple[str, float, str | None], Any] = field(repr=False, compare=False)

    def get(self, time: str, dt: float, method: str | None = None) -> RunSummary:
        """The run with this setting (``method=None`` matches a run without a method given)."""
        for run in (*self.runs, self.reference):
            if run.time == time and math.isclose(run.dt, dt, rel_tol=1e-12) \
                    and run.method == method:
                return run
        raise KeyError(f"no run with time={time!r}, dt={dt!r}, method={method!r}; runs: "
                       f"{[r.setting for r in self.runs]}")

    def order(self, time: str, method: str | None = None, *, layer: int = -1,
              metric: str = "time_error", exact_below: float = EXACT_BELOW) -> float:
        """Observed convergence order of ``metric`` (``"time_error"`` or ``"distance"``) of one
        layer over the grid steps of the runs with this ``time`` and ``method``: the
        least-squares slope of ``log(metric)`` against ``log(dt)``
        (:func:`~ctsnn.analysis.fitted_order`). The reference run itself is left out. NaN with
        fewer than two grid steps, an error of 0 or NaN, or when every run's spike-time error
        is at most ``exact_below`` seconds (exact to rounding, e.g. a closed-form flow at any
        dt: such errors are rounding noise and have no order)."""
        if metric not in ("time_error", "distance"):
            raise ValueError(f"metric must be 'time_error' or 'distance', got {metric!r}")
        runs = [r for r in self.runs if r.time == time and r.method == method
                and r.setting != self.reference.setting]
        if not runs:
            raise KeyError(f"no runs with time={time!r}, method={method!r} besides the "
                           f"reference; runs: {[r.setting for r in self.runs]}")
        if all(r.layers[layer].time_error <= exact_below for r in runs):
            return float("nan")
        return fitted_order([r.dt for r in runs],
                            [getattr(r.layers[layer], metric) for r in runs])

    def table(self) -> str:
        """The comparison as a markdown table (times in ms)."""
        n_layers = len(self.reference.layers)
        head = ["time", "dt (ms)", "method", "wall (s)"]
        for k in range(n_layers):
            head += [f"L{k} spikes (Δ)", f"L{k} err (ms)", f"L{k} vR"]
        head += ["output diff", "accuracy"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.runs:
            cells = [r.time, f"{r.dt * 1e3:.3g}", r.method or "default", f"{r.wall_s:.3g}"]
            for d in r.layers:
                cells += [f"{d.n_spikes} ({d.count_difference:+d})", f"{d.time_error * 1e3:.2e}",
                          f"{d.distance:.3g}"]
            cells.append("" if r.output_difference is None else f"{r.output_difference:.3g}")
            cells.append("" if r.accuracy is None else f"{r.accuracy:.3f}")
            rows.append("| " + " | ".join(cells) + " |")
        ref = self.reference
        rows.append(f"\nreference: {ref.time}, dt = {ref.dt * 1e3:.3g} ms, method "
                    f"{ref.method or 'default'}; err: mean distance to the nearest reference "
                    f"spike; vR: van Rossum distance (tau = {self.tau * 1e3:.3g} ms)")
        return "\n".join(rows)


def compare_time_modes(
    network: Any,
    inputs: Spikes | Tensor,
    dts: Sequence[float],
    *,
    modes: Sequence[str] = ("continuous", "discrete"),
    method: str | Mapping[str, str] | None = None,
    reference: tuple | None = None,
    labels: Tensor | None = None,
    readout: Any = None,
    predict: str | Callable[[Any], Tensor] = "argmax",
    tau: float | None = None,
    input_dt: float | None = None,
    repeats: int = 1,
    record: Sequence[str] = (),
) -> TimeModeComparison:
    """Run ``network`` on ``inputs`` in each time mode at each grid step and compare every run
    with a reference run.

    Args:
        network: a :class:`~ctsnn.Layer`, a :class:`~ctsnn.NeuronModel` or a sequence of them,
            as :func:`ctsnn.simulate` takes; the same object (weights, delays) runs every time.
        inputs: :class:`~ctsnn.Spikes` (exact times, rebinned to each ``dt``) or a current
            ``[T, B, N_in]`` on the grid ``input_dt`` (held constant over each of its steps; each
            ``dt`` must divide ``input_dt``).
        dts: grid steps (s).
        modes: the time modes compared.
        method: integrator for every mode, or per mode (``{"discrete": "euler"}``); default:
            :func:`ctsnn.simulate`'s.
        reference: ``(time, dt)`` or ``(time, dt, method)`` of the reference run; default:
            continuous time at the smallest ``dt`` (with ``method``'s continuous entry). It is
            run once more only if it is not one of the settings.
        labels: ``[B]`` class indices: then each run's accuracy (see ``predict``).
        readout: readout of the last layer (see :func:`ctsnn.simulate`): then the output
            difference.
        predict: how a run's class predictions ``[B]`` are made for the accuracy:
            ``"argmax"`` of the readout output (or, without a readout, of the last layer's
            spike counts), ``"first_spike"`` (the last-layer neuron that fires first; a
            sample with no spike predicts class 0), or a callable ``result -> [B]`` on the
            :func:`ctsnn.simulate` result.
        tau: van Rossum time constant (s); default ``10 * max(dts)``.
        input_dt: grid of a tensor ``inputs`` (s); an error with ``Spikes``.
        repeats: time each run this many times, keep the fastest.
        record: state variables to record in every run (e.g. ``("v",)``), for figures:
            ``cmp.simulations[setting].layers[k].states["v"]`` ``[T, B, N]``.

    Returns:
        A :class:`TimeModeComparison`. Mismatched shapes (input channels, consecutive layers,
        labels) raise ``ValueError`` before any simulation runs.
    """
    dts = _as_dts(dts)
    if not modes:
        raise ValueError("modes is empty: give at least one of 'continuous', 'discrete'")
    methods = _methods_by_mode(method, modes)
    settings = [(m, dt, methods.get(m)) for m in modes for dt in dts]
    if reference is None:
        reference = ("continuous", min(dts), methods.get("continuous"))
    return work_precision(network, inputs, settings, reference=reference, labels=labels,
                          readout=readout, predict=predict,
                          tau=10 * max(dts) if tau is None else tau, input_dt=input_dt,
                          repeats=repeats, record=record)


def work_precision(
    network: Any,
    inputs: Spikes | Tensor,
    settings: Sequence[tuple],
    *,
    reference: tuple,
    labels: Tensor | None = None,
    readout: Any = None,
    predict: str | Callable[[Any], Tensor] = "argmax",
    tau: float | None = None,
    input_dt: float | None = None,
    repeats: int = 3,
    record: Sequence[str] = (),
) -> TimeModeComparison:
    """Error against cost over any ``(time, dt)`` / ``(time, dt, method)`` settings (time modes,
    grid steps, solvers), each measured against one ``reference`` setting.

    The arguments are those of :func:`compare_time_modes` (``tau`` defaults to ten times the
    largest ``dt``); ``repeats`` (default 3) keeps the fastest of several timings, since wall
    times on a shared machine are noisy. Plot with :func:`ctsnn.plot.work_precision_plot`.
    """
    parsed = [parse_setting(s, "settings") for s in settings]
    if not parsed:
        raise ValueError("settings is empty: give at least one (time, dt[, method])")
    ref = parse_setting(reference, "reference")
    tau = 10 * max(dt for _, dt, _ in parsed) if tau is None else tau
    check_positive("tau", tau)
    repeats = as_int("repeats", repeats, minimum=1)
    if not callable(predict) and predict not in PREDICTIONS:
        raise ValueError(f"predict must be one of {PREDICTIONS} or a callable, got {predict!r}")
    _check_shapes(network, inputs, labels)
    if isinstance(inputs, Spikes):
        if input_dt is not None:
            raise ValueError("input_dt is the grid of a tensor input; Spikes carry their own "
                             "times: drop input_dt")
    else:
        input_dt = as_dt("input_dt", input_dt) if input_dt is not None else None
        if input_dt is None:
            raise ValueError("a tensor input needs input_dt (s), the grid it is sampled on")
        for _, dt, _ in [*parsed, ref]:
            _upsample_factor(dt, input_dt)  # every dt is checked before any simulation
    ordered = parsed + ([ref] if ref not in parsed else [])
    runs: list[TimeModeRun] = []
    for mode, dt, meth in ordered:
        x = inputs if isinstance(inputs, Spikes) else \
            inputs.repeat_interleave(_upsample_factor(dt, input_dt), dim=0)
        runs += run_time_modes(network, x, [(mode, dt, meth)], readout=readout,
                               repeats=repeats, record=record)
    by_setting = {(r.time, r.dt, r.method): r for r in runs}
    ref_run = by_setting[ref]
    ref_acc = _accuracy(ref_run.result, labels, predict)
    summaries = [_summarise(by_setting[s], ref_run, tau, labels, ref_acc, predict)
                 for s in parsed]
    return TimeModeComparison(
        runs=tuple(summaries),
        reference=_summarise(ref_run, ref_run, tau, labels, ref_acc, predict),
        tau=float(tau),
        simulations={k: r.result for k, r in by_setting.items()},
    )


# --------------------------------------------------------------------------- helpers
def _summarise(run: TimeModeRun, ref: TimeModeRun, tau: float, labels: Tensor | None,
               ref_acc: float | None, predict: Any) -> RunSummary:
    layers = []
    for x, r in zip(layer_results(run.result), layer_results(ref.result), strict=True):
        matched = compare_spikes(x.spikes, r.spikes)
        dist = van_rossum_distance(x.spikes, r.spikes, tau).mean().item()
        layers.append(LayerDifference(**asdict(matched), distance=dist))
    out, ref_out = run.result.output, ref.result.output
    out_diff = None if out is None else (out - ref_out).abs().max().item()
    acc = _accuracy(run.result, labels, predict)
    return RunSummary(run.time, run.dt, run.method, run.wall_s, tuple(layers), out_diff, acc,
                      None if acc is None else acc - ref_acc)


def _accuracy(result: Any, labels: Tensor | None, predict: Any) -> float | None:
    if labels is None:
        return None
    if callable(predict):
        pred = predict(result)
    elif predict == "first_spike":
        pred = result.spikes.first_times(fill=float("inf")).argmin(dim=1)
    else:
        scores = result.output if result.output is not None else result.spikes.count().to(
            torch.float64)
        pred = scores.argmax(dim=1)
    pred = torch.as_tensor(pred).cpu()
    if pred.shape != labels.shape:
        raise ValueError(f"predict returned shape {list(pred.shape)}; expected [B] = "
                         f"{list(labels.shape)}")
    return (pred == labels.cpu()).double().mean().item()


def _as_dts(dts: Sequence[float]) -> list[float]:
    if isinstance(dts, (int, float, Tensor)) and not isinstance(dts, bool) and (
            not isinstance(dts, Tensor) or dts.ndim == 0):
        raise TypeError("dts must be a sequence of grid steps (s), e.g. [1e-3, 5e-4]")
    out = [as_dt("dts", dt) for dt in dts]
    if not out:
        raise ValueError("dts is empty: give at least one grid step (s)")
    return out


def _methods_by_mode(method: str | Mapping[str, str] | None, modes: Sequence[str]
                     ) -> dict[str, str | None]:
    for m in modes:
        if m not in TIME_MODES:
            raise ValueError(f"unknown time mode {m!r} in modes; expected one of {TIME_MODES}")
    if method is None or isinstance(method, str):
        return dict.fromkeys(TIME_MODES, method)
    unknown = set(method) - set(TIME_MODES)
    if unknown:
        raise ValueError(f"method: unknown time modes {sorted(unknown)}; keys are {TIME_MODES}")
    return {m: method.get(m) for m in TIME_MODES}


def _upsample_factor(dt: float, input_dt: float) -> int:
    k = round(input_dt / dt)
    if k < 1 or abs(k * dt - input_dt) > 1e-9 * input_dt:
        raise ValueError(f"dt = {dt} s does not divide the input grid input_dt = {input_dt} s: "
                         "a tensor input is held constant over its steps, so every dt must be "
                         "input_dt / k")
    return k


def _check_shapes(network: Any, inputs: Any, labels: Tensor | None) -> None:
    """Check that inputs, consecutive layers and labels fit, before anything runs."""
    items = list(network) if isinstance(network, (list, tuple, torch.nn.Sequential,
                                                  torch.nn.ModuleList)) else [network]
    sizes = []
    for k, item in enumerate(items):
        if isinstance(item, Layer):
            sizes.append((item.n_in, item.model.n))
        elif isinstance(item, NeuronModel):
            sizes.append((item.n, item.n))
        else:
            raise TypeError(f"network item {k} is a {type(item).__name__}; expected a Layer or "
                            "a NeuronModel")
    if not sizes:
        raise ValueError("the network is empty")
    for k in range(1, len(sizes)):
        if sizes[k][0] != sizes[k - 1][1]:
            raise ValueError(f"layer {k} takes {sizes[k][0]} inputs but layer {k - 1} has "
                             f"{sizes[k - 1][1]} neurons")
    if isinstance(inputs, Spikes):
        n_in, batch = inputs.n_units, inputs.batch_size
    elif isinstance(inputs, Tensor):
        check_tensor("inputs", inputs, ndim=3, floating=True)
        n_in, batch = inputs.shape[2], inputs.shape[1]
    else:
        raise TypeError(f"inputs must be Spikes or a tensor [T, B, N_in], got "
                        f"{type(inputs).__name__}")
    if n_in != sizes[0][0]:
        raise ValueError(f"inputs have {n_in} channels but layer 0 takes {sizes[0][0]}")
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.shape != (batch,) \
                or labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor [B] = [{batch}], got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")


__all__ = [
    "EXACT_BELOW", "PREDICTIONS", "LayerDifference", "RunSummary", "TimeModeComparison",
    "compare_time_modes", "work_precision",
]
