"""Compiled continuous-time loop for models without a closed form (AdEx, equation models).

The reference continuous engine (:mod:`ctsnn.engine.continuous`) integrates such a model with
a fixed Runge-Kutta step used as dense output, issuing a few dozen small tensor operators per
step and per root-finder iteration from Python. This kernel runs the same algorithm, one
(sample, neuron) row at a time, in float64 numba code generated from the model's equations:

* the model is its equations: an :class:`~ctsnn.models.equations.EquationModel` (from
  :func:`ctsnn.from_equations`) or a built-in model of :data:`EQUATION_FORMS` (AdEx, AdLIF,
  QIF: their equation form) is printed as scalar ``math`` source
  (:func:`ctsnn.models.equations.codegen.model_source`), put into the loop's template
  (:mod:`.generic_template`) and compiled with ``numba.njit``; the module is a file named
  after the hash of its text in a cache directory (:func:`loop_module`), so numba's disk
  cache serves later processes (the first call of a new model or method compiles, tens of
  seconds on a busy machine);
* every grid step ``n`` is split at the exact arrival times of the step (local offsets in
  ``(0, dt]`` as :func:`ctsnn.spikes.locate` computes them in the run's dtype, after the grid
  snapping of delayed arrivals; every input spike splits the step of every target, also
  through a zero weight; simultaneous arrivals are one summed jump on the jump target);
* each piece ``[tau, end]`` is one step of the method from the piece's start (time argument
  ``n dt + tau``); an upward threshold crossing (``g`` from ``< 0`` to ``>= 0`` at the piece's
  end, or a hidden one: the slope of ``g`` going from rising to falling and ``g >= 0`` at its
  maximum, non-monotone models only) is located by the same safeguarded Illinois search as
  :func:`solvers.roots.find_root` on the same map (a partial step from the piece's start),
  to ``xtol`` (default ``64 eps dt``); the reset is applied there and the piece continues;
* an arrival that carries ``g`` from below to at or above zero fires (once per instant);
  a neuron at or above threshold at ``t = 0`` fires at ``t = 0``;
* a refractory period holds the clamped variables (their derivatives zeroed in every stage,
  their values restored after the step) and suppresses crossings until it ends: a piece
  stops at the end of the hold, which is kept per step as the reference keeps it (local,
  snapped onto the grid within 8 ulps); arrivals during it do not move a clamped jump
  target and fire nothing.

Rows are independent (feed-forward layer): numba ``prange`` runs chunks of rows, each chunk
owning its rows, so results do not depend on the thread count. float32 runs are computed in
float64 (schedule keys and offsets in float32, as the reference builds them) and rounded at the
end: they agree with the float64 reference to float32 resolution, not with the float32
reference bit for bit.

When it runs: :func:`generic_loop_refusal` (the selection rule, docs/kernels-generic.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import weakref
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ...compiled import kernel_threads, numba_threads
from ...models.adaptive import AdEx, AdLIF
from ...models.base import NeuronModel
from ...models.equations import EquationModel, parse_equations
from ...models.equations.codegen import CodegenError, ModelSource, model_source
from ...models.quadratic import QIF
from ...spikes import Spikes
from ...synapses import Arrivals, DelayedArrivals
from .event_driven import input_events, input_refusal, input_tensors, tensors_refusal

__all__ = ["EQUATION_FORMS", "METHODS", "GenericOutput", "generic_loop_refusal",
           "generic_source", "generic_spikes", "loop_module", "loop_source", "run_generic_loop"]

#: The built-in models without a closed form that the loop serves, as equations (the form
#: the loop is generated from; tests check each against the class's ``dynamics``,
#: ``threshold`` and ``reset``): class -> ``(equations, threshold, reset, parameter names)``.
EQUATION_FORMS: dict[type, tuple[str, str, str, tuple[str, ...]]] = {
    AdEx: ("dv/dt = (v_leak - v + delta_t*exp((v - v_t)/delta_t) + r*(I - w))/tau_mem\n"
           "dw/dt = (a*(v - v_leak) - w)/tau_w", "v >= v_peak", "v = v_reset; w += b",
           ("tau_mem", "tau_w", "r", "v_leak", "v_t", "delta_t", "a", "b", "v_reset", "v_peak")),
    AdLIF: ("dv/dt = (v_leak - v + r*(I - w))/tau_mem\ndw/dt = (a*(v - v_leak) - w)/tau_w",
            "v >= v_threshold", "v = v_reset; w += b",
            ("tau_mem", "tau_w", "a", "b", "r", "v_leak", "v_threshold", "v_reset")),
    QIF: ("dv/dt = (a*(v - v_rest)*(v - v_crit) + r*I)/tau_mem", "v >= v_peak", "v = v_reset",
          ("tau_mem", "a", "r", "v_rest", "v_crit", "v_peak", "v_reset")),
}
#: Fixed-step methods served (the index is the kernel's method code).
METHODS = ("euler", "midpoint", "heun", "rk4")
_PARALLEL_WORK = 20_000  # rows x steps below which one thread runs the call


# =========================================================================== model source
_SOURCES: weakref.WeakKeyDictionary[type, ModelSource] = weakref.WeakKeyDictionary()


def generic_source(model: NeuronModel) -> ModelSource:
    """The generated source of ``model`` (an :class:`EquationModel` or a model of
    :data:`EQUATION_FORMS`).

    Raises:
        CodegenError: the model is neither, or its equations use something the loop cannot
            evaluate.
    """
    cls = type(model)
    if cls not in _SOURCES:
        if cls.__bases__ == (EquationModel,):  # as built: a subclass may override methods
            spec = model.spec
        elif cls in EQUATION_FORMS:
            equations, threshold, reset, names = EQUATION_FORMS[cls]
            spec = parse_equations(equations, parameters=names, threshold=threshold,
                                   reset=reset)
        else:
            raise CodegenError(f"{cls.__name__} is neither a model built by from_equations nor "
                               "one of "
                               f"{', '.join(c.__name__ for c in EQUATION_FORMS)}")
        _SOURCES[cls] = model_source(spec)
    return _SOURCES[cls]


# =========================================================================== kernels
_TEMPLATE = Path(__file__).with_name("generic_template.py")
_BEGIN, _END = "# PLACEHOLDERS BEGIN\n", "# PLACEHOLDERS END\n"
_MODULES: dict[str, ModuleType] = {}


def _cache_dir() -> Path:
    """Where generated loop modules (and numba's cache of them) live: ``$CTSNN_CACHE_DIR``,
    else ``~/.cache/ctsnn/generic_loop``, else a directory in the system's temp dir."""
    user = os.getuid() if hasattr(os, "getuid") else 0
    for base in (os.environ.get("CTSNN_CACHE_DIR"),
                 Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ctsnn",
                 Path(tempfile.gettempdir()) / f"ctsnn-{user}"):
        if base is None:
            continue
        path = Path(base) / "generic_loop"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError("no writable directory for the generated generic-loop modules")


def loop_source(source: ModelSource, method: str, has_slope: bool, jump: int) -> str:
    """The text of the loop module for one model and method: the template
    (``generic_template.py``) with its placeholder block replaced by the generated model
    functions (each compiled with the template's ``_jit``) and constants."""
    template = _TEMPLATE.read_text()
    begin, end = template.index(_BEGIN), template.index(_END) + len(_END)
    model = "\n".join(f"@_jit\n{line}" if line.startswith("def ") else line
                      for line in source.source.splitlines())
    block = (f"METHOD = {METHODS.index(method)}\nSPIKING = {source.spiking}\n"
             f"RESETS = {source.resets}\nHAS_SLOPE = {has_slope}\nJUMP = {jump}\n\n\n"
             f"{model}\n")
    return template[:begin] + block + template[end:]


def loop_module(source: ModelSource, method: str, has_slope: bool, jump: int) -> ModuleType:
    """The compiled loop of one model and method (its ``rows_range`` and ``rows_parallel``).

    The module text (:func:`loop_source`) is written once to a file named after its hash in
    the cache directory and imported; numba compiles it at the first call and keeps the
    machine code in that directory (``cache=True``), so later processes load it instead.
    """
    text = loop_source(source, method, has_slope, jump)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    if digest not in _MODULES:
        name = f"ctsnn_generic_loop_{digest}"
        path = _cache_dir() / f"{name}.py"
        if not path.exists() or path.read_text() != text:
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text)
            os.replace(partial, path)  # atomic: a concurrent process never reads half a file
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _MODULES[digest] = module
    return _MODULES[digest]


# =========================================================================== selection rule
def generic_loop_refusal(model: NeuronModel, *, time: str, method: object, arrivals: object,
                         dt: float, n_steps: int, current: object, jumps: object,
                         recurrent: object, record: tuple, saveat: object, integrand: object,
                         state: tuple | None, dtype: torch.dtype) -> str | None:
    """Why the compiled generic loop cannot serve a run, or ``None`` when it does.

    The selection rule (docs/kernels-generic.md): continuous time with a fixed-step method
    (one of :data:`METHODS`); an :class:`~ctsnn.models.equations.EquationModel` or
    built-in model of :data:`EQUATION_FORMS` (AdEx, AdLIF, QIF) whose equations the generator
    can print (:func:`generic_source`), without delayed reads; input only as
    spikes through a :class:`~ctsnn.synapses.Dense` synapse with the ``Exact`` kernel (zero,
    per-axon or per-synapse delays); no input current, jumps, recurrent synapse, recording,
    ``saveat`` or integrand; float32 / float64; nothing that needs an autograd graph; and
    compiled kernels enabled for these CPU tensors (:func:`ctsnn.compiled.kernels_enabled`).
    Otherwise the reference engine runs.
    """
    if time != "continuous" or not isinstance(method, str) or method not in METHODS:
        return f"not continuous time with a fixed-step method ({', '.join(METHODS)})"
    if not (type(model).__bases__ == (EquationModel,) or type(model) in EQUATION_FORMS):
        names = ", ".join(c.__name__ for c in EQUATION_FORMS)
        return (f"{type(model).__name__} is neither a model built by from_equations nor one "
                f"of {names}")
    if model.delayed_reads:
        return "the model reads its own delayed state"
    reason = input_refusal(arrivals, dt=dt, n_steps=n_steps, dtype=dtype, current=current,
                           jumps=jumps, recurrent=recurrent, saveat=saveat,
                           integrand=integrand, record=tuple(record) or None)
    if reason is not None:
        return reason
    try:
        generic_source(model)
    except CodegenError as exc:
        return str(exc)
    return tensors_refusal([*input_tensors(arrivals), *model.parameters(), *model.buffers(),
                            *(() if state is None else state)])


# =========================================================================== entry point
class GenericOutput(NamedTuple):
    """Spikes of the layer (``[K]`` each, any order: :func:`generic_spikes` sorts them) and
    the final state (the model's named tuple of ``[B, N]``)."""

    times: Tensor
    batch: Tensor
    units: Tensor
    final_state: tuple


def _params(model: NeuronModel, names: tuple[str, ...]) -> np.ndarray:
    """Per-neuron float64 parameters ``[N, P]`` in ``names`` order."""
    cols = [getattr(model, name).detach().to(torch.float64).cpu().expand(model.n)
            for name in names]
    if not cols:
        return np.zeros((model.n, 1))
    return torch.stack(cols, dim=1).contiguous().numpy()


def run_generic_loop(model: NeuronModel, arrivals: Arrivals | DelayedArrivals, *,
                     method: str, n_steps: int, batch_size: int, state: tuple | None,
                     dtype: torch.dtype, xtol: float | None = None) -> GenericOutput | None:
    """Simulate the layer with the compiled loop (see the module docstring).

    Args:
        model: an :class:`EquationModel` or a model of :data:`EQUATION_FORMS` (``N``
            neurons).
        arrivals: the schedule :meth:`ctsnn.synapses.Dense.arrivals` built (input spikes,
            weight ``[N, N_in]``, delays ``[N, N_in]`` seconds).
        method: one of :data:`METHODS`.
        n_steps, batch_size: the grid (``T = n_steps dt`` seconds) and ``B``.
        state: initial state (``[B, N]`` per variable), default ``model.initial_state``.
        dtype: dtype of the results (the computation is float64).
        xtol: tolerance of the crossing search (s), default ``64 eps dt`` (float64 ``eps``).

    Returns:
        the spikes and final state, or ``None`` when the state became NaN or infinite (the
        caller then runs the reference engine, which raises the explanatory error).
    """
    source = generic_source(model)
    loop = loop_module(source, method, not model.monotone,
                       model.state_names.index(model.jump_target))
    spikes, dt = arrivals.spikes, arrivals.dt
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype)
    is32 = dtype == torch.float32
    np_dtype = np.float32 if is32 else np.float64
    ev_t, ev_u, ptr = input_events(spikes, batch_size, dtype)  # samples contiguous already
    ev_x = spikes.values.detach().to(dtype).to(torch.float64).cpu().numpy()
    weight = arrivals.weight.detach().to(dtype).to(torch.float64).cpu().contiguous().numpy()
    has_delay = isinstance(arrivals, DelayedArrivals)
    delay = (arrivals.delay.detach().to(dtype).expand(weight.shape).cpu().contiguous().numpy()
             if has_delay else np.zeros((1, 1), dtype=np_dtype))
    eps = float(torch.finfo(dtype).eps)
    key_end = float(torch.tensor(spikes.n_steps * dt, dtype=torch.float64).to(dtype))
    dt_end = float(torch.tensor(dt, dtype=dtype))
    xtol = 64 * float(torch.finfo(torch.float64).eps) * dt if xtol is None else float(xtol)
    n, n_rows = model.n, batch_size * model.n
    y0 = torch.stack([s.detach().to(torch.float64).cpu() for s in state], dim=-1).numpy()
    y0 = np.ascontiguousarray(y0)
    y_end = np.empty_like(y0)
    p = _params(model, source.param_names)
    ref = model.refractory.detach().to(dtype).to(torch.float64).cpu().expand(n).contiguous()
    has_ref = bool((ref > 0).any())
    ref = ref.numpy()
    clamp = np.array([name in model.clamped_names for name in model.state_names])
    threads = kernel_threads() if n_rows * max(n_steps, 1) >= _PARALLEL_WORK else 1

    def simulate(rows: np.ndarray, cap: int) -> tuple[np.ndarray, ...]:
        out_n = np.empty((rows.size, cap), dtype=np.int64)
        out_tau = np.empty((rows.size, cap))
        counts = np.zeros(rows.size, dtype=np.int64)
        finite = np.ones(rows.size, dtype=np.bool_)
        args = (ev_t, ev_u, ev_x, ptr, weight, delay, has_delay, is32, dt, eps, key_end,
                n_steps, dt_end, xtol, p, ref, has_ref, clamp, y0, out_n, out_tau, counts,
                finite, y_end)
        if threads > 1 and rows.size > 1:
            with numba_threads(threads):
                loop.rows_parallel(min(rows.size, 16 * threads), rows, *args)
        else:
            loop.rows_range(0, rows.size, rows, *args)
        return out_n, out_tau, counts, finite

    rows = np.arange(n_rows, dtype=np.int64)
    out_n, out_tau, counts, finite = simulate(rows, 32)
    if not finite.all():
        return None
    over = np.nonzero(counts > out_n.shape[1])[0]
    keep = np.arange(out_n.shape[1])[None, :] < counts[:, None]
    steps, taus, which = out_n[keep], out_tau[keep], np.nonzero(keep)[0]
    if over.size:  # rows that fired more than the buffer holds: run them again with room
        more_n, more_tau, more_counts, _ = simulate(rows[over], int(counts[over].max()))
        keep2 = np.arange(more_n.shape[1])[None, :] < more_counts[:, None]
        first = ~np.isin(which, over)
        steps = np.concatenate([steps[first], more_n[keep2]])
        taus = np.concatenate([taus[first], more_tau[keep2]])
        which = np.concatenate([which[first], over[np.nonzero(keep2)[0]]])
    # as SpikeLog.add: n dt + local time in the dtype, kept inside its step
    step_t = torch.from_numpy(steps)
    times = torch.from_numpy(taus).to(dtype) + (step_t.to(torch.float64) * dt).to(dtype)
    end = ((step_t + 1).to(torch.float64) * dt).to(dtype)
    times = times - (times - end).clamp_min(0)
    which_t = torch.from_numpy(which)
    final = torch.from_numpy(y_end).to(dtype)
    return GenericOutput(times, which_t // n, which_t % n,
                         model.State(*final.unbind(-1)))


def generic_spikes(out: GenericOutput, *, dt: float, n_steps: int, batch_size: int,
                   n_units: int) -> Spikes:
    """The output spikes of :func:`run_generic_loop` as sorted :class:`Spikes`."""
    return Spikes.from_events(out.times, out.units, out.batch, dt=dt, n_steps=n_steps,
                              batch_size=batch_size, n_units=n_units)
