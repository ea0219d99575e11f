"""EventProp-with-delays networks (Mészáros, Knight & Nowotny 2025) built from ctsnn layers.

SEEDS C1-C2: hidden ``CubaLIF`` layers (``tau_mem`` 20 ms, ``tau_syn`` 5 ms, threshold 1, reset
to 0), optionally with their own delayed recurrence (:class:`~ctsnn.synapses.RecurrentDense`),
and a ``CubaLI`` readout (leaky integrators; ``avg_exp`` or ``max`` readout, cross-entropy) or a
``CubaLIF`` readout read by its first spikes (Yin-Yang, time-invariant MSE). Every layer is a
:class:`ctsnn.Layer` with ``gradient="adjoint"`` (exact event-based gradients for weights and
delays), in continuous time or on mlGeNN's grid (``time="discrete"``, feed-forward only).
Weights are Gaussian ``N(mean, std)`` per connection kind and delays uniform in seconds, as in
the paper's ``arguments.py`` (SEEDS C2).

The network takes :class:`ctsnn.Spikes` ``[B, n_in]`` (exact times, seconds) and returns the
readout ``[B, n_out]``: logits (``avg_exp``/``max``) or first-spike times in seconds
(``first_spike``). :meth:`EventPropNet.loss` and :meth:`EventPropNet.predict` match it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..gradients import Adjoint
from ..losses import time_invariant_mse
from ..models.lif import CubaLI, CubaLIF
from ..network import Layer, simulate
from ..papers.checks import check_bool_field, check_choice_field, check_int_field, check_real_field
from ..spikes import Spikes
from ..synapses import RecurrentDense

#: Readouts of the output layer: logits (LI) or first-spike times (LIF).
READOUTS = ("avg_exp", "max", "first_spike")
TIME_MODES = ("continuous", "discrete")


def _check_pair(name: str, value: object, *, ordered: bool = False) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}")
    check_real_field(f"{name}[0]", value[0], low=-float("inf"))
    check_real_field(f"{name}[1]", value[1], allow_low=True)
    if ordered and not 0 <= value[0] <= value[1]:
        raise ValueError(f"{name} = {tuple(value)!r} must be (low, high) with 0 <= low <= high")


@dataclass(frozen=True)
class EventPropConfig:
    """Hyper-parameters of an EventProp network (times in seconds; defaults: SHD recurrent).

    Attributes:
        n_in, hidden, n_out: input channels, hidden widths (``()``: inputs feed the readout
            directly, as in the sequence-detection task), classes.
        recurrent: every hidden layer has its own delayed recurrent connection (continuous time
            only: the discrete adjoint is feed-forward).
        time: ``"continuous"`` (exact event times) or ``"discrete"`` (mlGeNN's grid, ``dt``).
        dt: grid step (s) of the input spikes and of the discrete mode.
        tau_mem, tau_syn, threshold: neuron constants (s, s, 1).
        max_delay: delay window of the learnable connections (s).
        in_weight, hidden_weight, rec_weight, out_weight: ``(mean, std)`` of the Gaussian
            weights of input->hidden, hidden->hidden, recurrent and ->readout connections.
        delay_init: ``(low, high)`` (s) of the uniform initial feed-forward delays of the
            connections that learn them; rec_delay_init: the same for the recurrent ones.
        output_delay: explicit initial delays (s) ``[n_out][n_last]`` of the connection into
            the readout (e.g. the sequence task's worst initialisation); needs
            ``learn_output_delay``.
        learn_weight: train the weights (the sequence task fixes them at 1: set
            ``in_weight = out_weight = (1, 0)``).
        learn_delay: learn the delays of the input->hidden, hidden->hidden and recurrent
            connections; learn_output_delay: also those of the connection into the readout (the
            paper keeps hidden->output delays fixed at 0; the sequence task learns them).
        readout: ``"avg_exp"`` / ``"max"`` (``CubaLI`` readout, cross-entropy on the logits)
            or ``"first_spike"`` (``CubaLIF`` readout, time-invariant MSE with lag ``delta``).
        delta: target lag (s) of the wrong classes' first spikes (first_spike readout).
        spike_reg: ``(strength, target count)`` of the hidden layers' spike-count regulariser
            (SEEDS C1.5; ``None``: off).
    """

    n_in: int = 700
    hidden: tuple[int, ...] = (512,)
    n_out: int = 20
    recurrent: bool = True
    time: str = "continuous"
    dt: float = 1e-3
    tau_mem: float = 0.02
    tau_syn: float = 0.005
    threshold: float = 1.0
    max_delay: float = 1.0
    in_weight: tuple[float, float] = (0.03, 0.01)
    hidden_weight: tuple[float, float] = (0.02, 0.03)
    rec_weight: tuple[float, float] = (0.0, 0.02)
    out_weight: tuple[float, float] = (0.0, 0.03)
    delay_init: tuple[float, float] = (0.0, 0.15)
    rec_delay_init: tuple[float, float] = (0.0, 0.0)
    output_delay: tuple[tuple[float, ...], ...] | None = None
    learn_weight: bool = True
    learn_delay: bool = True
    learn_output_delay: bool = False
    readout: str = "avg_exp"
    delta: float = 0.002
    spike_reg: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out"):
            check_int_field(name, getattr(self, name))
        if not isinstance(self.hidden, (tuple, list)):
            raise TypeError(f"hidden must be a tuple of layer widths, got {self.hidden!r}")
        for k, h in enumerate(self.hidden):
            check_int_field(f"hidden[{k}]", h)
        for name in ("dt", "tau_mem", "tau_syn", "threshold", "max_delay", "delta"):
            check_real_field(name, getattr(self, name))
        for name in ("recurrent", "learn_weight", "learn_delay", "learn_output_delay"):
            check_bool_field(name, getattr(self, name))
        check_choice_field("time", self.time, TIME_MODES)
        check_choice_field("readout", self.readout, READOUTS)
        for name in ("in_weight", "hidden_weight", "rec_weight", "out_weight"):
            _check_pair(name, getattr(self, name))
        for name in ("delay_init", "rec_delay_init"):
            _check_pair(name, getattr(self, name), ordered=True)
            if getattr(self, name)[1] > self.max_delay:
                raise ValueError(f"{name} = {tuple(getattr(self, name))!r} exceeds max_delay = "
                                 f"{self.max_delay!r} s")
        if self.output_delay is not None:
            self._check_output_delay()
        if self.spike_reg is not None:
            _check_pair("spike_reg", self.spike_reg)
        if self.recurrent and self.time == "discrete":
            raise ValueError("recurrent=True needs time='continuous': the discrete-time "
                             "EventProp (mlGeNN's grid) is feed-forward only")
        if self.recurrent and not self.hidden:
            raise ValueError("recurrent=True needs at least one hidden layer")
        if self.readout == "first_spike" and self.time == "discrete":
            raise ValueError("readout='first_spike' needs time='continuous' (the discrete "
                             "EventProp reads out CubaLI voltages)")


    def _check_output_delay(self) -> None:
        rows, n_last = self.output_delay, (self.hidden[-1] if self.hidden else self.n_in)
        if not self.learn_output_delay:
            raise ValueError("output_delay sets the initial learnable readout delays: it needs "
                             "learn_output_delay=True")
        if len(rows) != self.n_out or any(len(r) != n_last for r in rows):
            raise ValueError(f"output_delay must be {self.n_out} rows of {n_last} delays (s) "
                             f"[n_out][n_last], got {rows!r}")
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                check_real_field(f"output_delay[{i}][{j}]", v, allow_low=True,
                                 high=self.max_delay, allow_high=True)


def _gauss(shape: tuple[int, int], pair: tuple[float, float], g: torch.Generator,
           dtype: torch.dtype) -> Tensor:
    return torch.randn(shape, generator=g, dtype=dtype) * pair[1] + pair[0]


def _uniform(shape: tuple[int, ...], pair: tuple[float, float], g: torch.Generator,
             dtype: torch.dtype) -> Tensor:
    return torch.rand(shape, generator=g, dtype=dtype) * (pair[1] - pair[0]) + pair[0]


class EventPropNet(nn.Module):
    """An EventProp-with-delays network (see the module docstring).

    Args:
        config: hyper-parameters.
        generator: random generator of the initial weights and delays.
        dtype: parameter dtype (default: torch's default).

    ``forward(x)`` takes :class:`ctsnn.Spikes` with ``n_in`` units and returns ``[B, n_out]``.
    ``layers`` is the list of :class:`ctsnn.Layer` (hidden layers, then the readout).
    """

    def __init__(self, config: EventPropConfig | None = None, *,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        cfg = config or EventPropConfig()
        if not isinstance(cfg, EventPropConfig):
            raise TypeError(f"config must be an EventPropConfig, got {type(cfg).__name__}")
        self.config = cfg
        g = generator or torch.Generator().manual_seed(0)
        dtype = dtype or torch.get_default_dtype()
        sizes = (cfg.n_in, *cfg.hidden)
        hidden_grad = Adjoint(spike_reg=None if cfg.spike_reg is None else tuple(cfg.spike_reg))
        self.layers = nn.ModuleList()
        for k, n in enumerate(cfg.hidden):
            w = _gauss((n, sizes[k]), cfg.in_weight if k == 0 else cfg.hidden_weight, g, dtype)
            d = _uniform((n, sizes[k]), cfg.delay_init, g, dtype)
            rec = None
            if cfg.recurrent:
                rec = RecurrentDense(
                    weight=_gauss((n, n), cfg.rec_weight, g, dtype),
                    delay=_uniform((n, n), cfg.rec_delay_init, g, dtype),
                    learn_delay=cfg.learn_delay, max_delay=cfg.max_delay,
                    learn_weight=cfg.learn_weight, dtype=dtype)
            lif = CubaLIF(n, tau_mem=cfg.tau_mem, tau_syn=cfg.tau_syn, v_threshold=cfg.threshold,
                          v_reset=0.0)
            self.layers.append(self._layer(lif, w, d, cfg.learn_delay, rec, hidden_grad))
        n_last = sizes[-1]
        w = _gauss((cfg.n_out, n_last), cfg.out_weight, g, dtype)
        if cfg.output_delay is not None:
            d = torch.tensor(cfg.output_delay, dtype=dtype)
        elif cfg.learn_output_delay:
            d = _uniform((cfg.n_out, n_last), cfg.delay_init, g, dtype)
        else:
            d = torch.zeros(cfg.n_out, n_last, dtype=dtype)
        out = (CubaLIF(cfg.n_out, tau_mem=cfg.tau_mem, tau_syn=cfg.tau_syn,
                       v_threshold=cfg.threshold, v_reset=0.0)
               if cfg.readout == "first_spike" else
               CubaLI(cfg.n_out, tau_mem=cfg.tau_mem, tau_syn=cfg.tau_syn))
        self.layers.append(self._layer(out, w, d, cfg.learn_output_delay, None, "adjoint"))
        self.to(dtype)

    def _layer(self, model: nn.Module, w: Tensor, d: Tensor, learn_delay: bool,
               rec: RecurrentDense | None, gradient) -> Layer:
        cfg = self.config
        layer = Layer(model, w, delay=d, learn_delay=learn_delay, max_delay=cfg.max_delay,
                      recurrent=rec, time=cfg.time, gradient=gradient)
        if not cfg.learn_weight:
            for name, p in layer.synapse.named_parameters():
                if "weight" in name:
                    p.requires_grad_(False)
        return layer

    def forward(self, x: Spikes) -> Tensor:
        """``x`` :class:`Spikes` ``[B, n_in]`` -> readout ``[B, n_out]`` (logits or first-spike
        times in s)."""
        if not isinstance(x, Spikes):
            raise TypeError(f"EventPropNet takes ctsnn.Spikes, got {type(x).__name__}")
        if x.n_units != self.config.n_in:
            raise ValueError(f"the input spikes have {x.n_units} units but the network expects "
                             f"n_in = {self.config.n_in}")
        return simulate(list(self.layers), x, readout=self.config.readout).output

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of the logits, or the time-invariant MSE of first-spike times."""
        if self.config.readout == "first_spike":
            return time_invariant_mse(output, target, self.config.delta)
        return F.cross_entropy(output, target)

    def predict(self, output: Tensor) -> Tensor:
        """Classes ``[B]``: largest logit, or earliest first spike."""
        if self.config.readout == "first_spike":
            return output.argmin(dim=1)
        return output.argmax(dim=1)


__all__ = ["EventPropConfig", "EventPropNet"]
