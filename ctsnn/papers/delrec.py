"""DelRec (Quéant, Rançon, Cottereau & Masquelier, 2025): recurrent SNNs with learnable delays.

Architectures (SEEDS B2), time-first ``[T, B, N]`` tensors, grid step ``dt`` seconds, all
neurons the SpikingJelly LIF ``u[t] = (1 - 1/tau) u[t-1] + I[t]`` (``tau`` in steps, input not
divided by ``tau``; the ctsnn :class:`~ctsnn.LIF` with ``method="euler"`` and
``tau_mem = tau dt``), threshold 1:

* **SHD** (:meth:`DelRecConfig.shd`): ``Linear(140→256) → BN → LIF → Dropout(0.4)``;
  ``Linear(256→256) → BN → LIF with delayed recurrence → Dropout(0.4)``; readout
  ``Linear(256→20) → LIF(threshold 1e8)`` whose membrane trace is the output; ``tau`` 1.05
  steps (the code's value; the paper says 1.005), hard reset to 0, arctan surrogate
  ``alpha = 5`` with ``detach_reset``; recurrent dropout 0.2; delays ``U(10, 30)`` steps;
  no learnable width.
* **SSC** (:meth:`DelRecConfig.ssc`): ``3 × [Linear → Dropout(0.1) → LIF with delayed
  recurrence]`` (256 wide), readout a plain ``Linear(256→35)`` whose per-step logits are summed;
  ``tau`` 2 steps, soft reset (subtract the threshold), triangle surrogate (width 1) without
  ``detach_reset``, recurrent dropout 0.3, delays ``|N(0, 12²)|`` steps, learnable width
  ``p_spread``; biases (the code's setting), no BatchNorm.
* **PS-MNIST** (:meth:`DelRecConfig.psmnist`): as SSC with layers ``[64, 212, 212]``, one real
  valued input channel (784 steps), readout ``Linear(212→10)``, recurrent dropout 0.2.

Parameter counts (:func:`ctsnn.training.count_parameters`: every learnable tensor — weights, biases,
BatchNorm ``gamma``/``beta``, recurrent weights, delays and ``p_spread``; not σ nor BatchNorm
running statistics): SHD 173,844; SSC 374,819; PS-MNIST 156,154 (the paper's 0.17 M / 0.37 M /
0.16 M).

Losses (SEEDS B1.7, in :mod:`ctsnn.losses`): SHD
:func:`~ctsnn.losses.summed_softmax_cross_entropy` (cross-entropy of ``Σ_t softmax(V[t])``, i.e. a
second log-softmax on summed probabilities, like DCLS), SSC/PS-MNIST
:func:`~ctsnn.losses.summed_logits_cross_entropy` (``CE(Σ_t z[t], y)``); the ablation's
``λ Σ S² / (2 T B N)`` is :func:`~ctsnn.losses.mean_square_spike_penalty`. :meth:`DelRecNet.loss`
picks the one matching the readout.

Training recipe (:func:`delrec_optimisers`, a :class:`~ctsnn.training.WeightDelayRecipe`):
separate optimisers for weights and for delays (and ``p_spread``); σ follows
:class:`~ctsnn.training.DelRecSigmaSchedule` (``10 · 0.95^(100 e/E)``, set at the start of each
epoch); every preset projects the delays into ``[0, max]`` after every step
(:func:`~ctsnn.clamp_delays_`). The reference SHD trainer does so; its SSC/PS-MNIST trainers do
not, which lets a delay go negative between evaluations — here a negative recurrent delay is
refused by the forward (it would mean arriving before lag ``1``, the half of the triangle below
lag 1 silently dropped), so all presets project (a documented deviation, SEEDS B1.6).
Evaluation (``model.eval()``) uses integer delays and σ = 0 (``eval_mode="paper"``) or the
reference code's in-place rounding with σ kept (``eval_mode="reference"``).

Unverified details (kept configurable): feed-forward dropout masks are shared over time
(SpikingJelly's multi-step ``Dropout``; :attr:`DelRecConfig.shared_dropout`); BatchNorm
statistics are taken over ``T × B``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from torch import Tensor, nn

from .._checks import check_tensor
from ..engine import run_population
from ..losses import (
    summed_logits_cross_entropy,
    summed_logits_prediction,
    summed_softmax_cross_entropy,
    summed_softmax_prediction,
)
from ..models.lif import LIF
from ..network import Layer, clamp_delays_, delay_parameters
from ..surrogate import Surrogate, atan, triangle
from ..synapses import LinearSynapse, RecurrentDense, Triangle
from ..synapses.init import half_normal_delays, uniform_delays
from ..synapses.recurrent import EVAL_MODES
from ..training import DelRecSigmaSchedule, WeightDelayOptimiser, WeightDelayRecipe
from .checks import check_bool_field, check_choice_field, check_int_field, check_real_field

RESETS = ("zero", "subtract")
READOUTS = ("membrane", "linear")
DROPOUT_POSITIONS = ("after_neuron", "before_neuron")
SURROGATES = ("atan", "triangle")
DELAY_INITS = ("uniform", "half_normal")
#: The recurrent-delay variants, i.e. the paper's ablations (:attr:`DelRecConfig.rec_delays`).
REC_DELAYS = ("learned", "fixed_random", "none")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DelRecConfig:
    """Hyper-parameters of a DelRec network (times in seconds, delays in steps).

    Attributes:
        n_in, hidden, n_out: input channels, hidden layer widths, classes.
        recurrent: per hidden layer, whether it has delayed recurrence (SHD: ``(False, True)``).
        dt: grid step (s). tau_steps: membrane time constant in steps.
        reset: ``"zero"`` (hard, SHD) or ``"subtract"`` (soft, SSC/PS-MNIST).
        batch_norm, bias: BatchNorm after each hidden Linear; biases on every Linear.
        ff_dropout: feed-forward dropout; ``dropout_position`` ``"after_neuron"`` (SHD: on the
            spikes, i.e. before the next Linear and the readout) or ``"before_neuron"``
            (SSC/PS-MNIST: ``Linear → Dropout → LIF``).
        shared_dropout: feed-forward dropout mask shared over time steps.
        rec_dropout: recurrent dropout (mask fixed over the sequence).
        readout: ``"membrane"`` (LIF with threshold 1e8, membrane trace, SHD) or ``"linear"``
            (per-step logits of a Linear on the last spikes, SSC/PS-MNIST).
        surrogate, surrogate_scale, detach_reset: ``"atan"`` (alpha) or ``"triangle"`` (width).
        learn_width: learnable ``p_spread`` per recurrent neuron.
        delay_init, delay_init_args: ``"uniform"`` ``(low, high)`` or ``"half_normal"``
            ``(std,)``, in steps.
        rec_delays: the recurrent-delay variant (the paper's ablations, SEEDS B3), each the same
            model in training and evaluation except for ``"learned"``:

            * ``"learned"`` (DelRec): learnable delays, triangle spread ``σ`` following the
              schedule from ``sigma_init``; integer delays and ``σ = 0`` in ``eval()``
              (``eval_mode="paper"``).
            * ``"fixed_random"``: delays drawn by ``delay_init``, rounded to whole steps
              (``>= 0``), never trained; ``σ = 0`` throughout (one tap at lag ``1 + d``), no
              schedule.
            * ``"none"``: the vanilla RSNN, every recurrent delay 0 (lag one step), ``σ = 0``.

            Layers without recurrence (the vanilla SNN) are ``recurrent=(False, ...)``.
            ``learn_width`` needs ``"learned"`` (a fixed one-tap kernel has no width).
        sigma_init: σ at epoch 0 (steps). eval_mode: see :class:`~ctsnn.synapses.RecurrentDense`.
        clamp_delays: project the delays into ``[0, max]`` after every optimiser step; must be
            ``True`` with ``rec_delays="learned"`` (the forward refuses a negative delay; the
            reference SSC/PS-MNIST trainers do not clamp, a documented deviation).
        epochs, batch_size: training length.
        optimiser, lr, weight_decay, bn_weight_decay: weights' optimiser (``"adam"``/
            ``"adamw"``), ``OneCycleLR(max_lr=lr, total_steps=epochs)``.
        delay_optimiser, lr_delay, delay_scheduler: delays' (and ``p_spread``'s) optimiser,
            no weight decay, ``"cosine"`` or ``"onecycle"`` schedule.
    """

    n_in: int = 140
    hidden: tuple[int, ...] = (256, 256)
    n_out: int = 20
    recurrent: tuple[bool, ...] = (False, True)
    dt: float = 0.01
    tau_steps: float = 1.05
    reset: str = "zero"
    batch_norm: bool = True
    bias: bool = True
    ff_dropout: float = 0.4
    dropout_position: str = "after_neuron"
    shared_dropout: bool = True
    rec_dropout: float = 0.2
    readout: str = "membrane"
    readout_threshold: float = 1e8
    surrogate: str = "atan"
    surrogate_scale: float = 5.0
    detach_reset: bool = True
    learn_width: bool = False
    delay_init: str = "uniform"
    delay_init_args: tuple[float, ...] = (10.0, 30.0)
    rec_delays: str = "learned"
    sigma_init: float = 10.0
    eval_mode: str = "paper"
    clamp_delays: bool = True
    epochs: int = 150
    batch_size: int = 256
    optimiser: str = "adamw"
    lr: float = 5e-3
    weight_decay: float = 1e-5
    bn_weight_decay: float = 0.0
    delay_optimiser: str = "adamw"
    lr_delay: float = 5e-2
    delay_scheduler: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out", "epochs", "batch_size"):
            check_int_field(name, getattr(self, name))
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise TypeError(f"hidden must be a non-empty tuple of layer widths, got "
                            f"{self.hidden!r}")
        for k, h in enumerate(self.hidden):
            check_int_field(f"hidden[{k}]", h)
        if not isinstance(self.recurrent, (tuple, list)):
            raise TypeError(f"recurrent must be a tuple of bools, one per hidden layer, got "
                            f"{self.recurrent!r}")
        if len(self.recurrent) != len(self.hidden):
            raise ValueError(f"recurrent needs one flag per hidden layer ({len(self.hidden)}), "
                             f"got {self.recurrent!r}")
        for k, r in enumerate(self.recurrent):
            check_bool_field(f"recurrent[{k}]", r)
        for name in ("dt", "tau_steps", "readout_threshold", "surrogate_scale", "lr", "lr_delay"):
            check_real_field(name, getattr(self, name))
        for name in ("sigma_init", "weight_decay", "bn_weight_decay"):
            check_real_field(name, getattr(self, name), allow_low=True)
        for name in ("ff_dropout", "rec_dropout"):
            check_real_field(name, getattr(self, name), allow_low=True, high=1.0)
        for name in ("batch_norm", "bias", "shared_dropout", "detach_reset", "learn_width",
                     "clamp_delays"):
            check_bool_field(name, getattr(self, name))
        for name, choices in (
            ("reset", RESETS), ("readout", READOUTS), ("dropout_position", DROPOUT_POSITIONS),
            ("surrogate", SURROGATES), ("delay_init", DELAY_INITS),
            ("optimiser", ("adam", "adamw")), ("delay_optimiser", ("adam", "adamw")),
            ("delay_scheduler", ("cosine", "onecycle")), ("eval_mode", EVAL_MODES),
            ("rec_delays", REC_DELAYS),
        ):
            check_choice_field(name, getattr(self, name), choices)
        self._check_delay_init_args()
        if self.learn_width and self.rec_delays != "learned":
            raise ValueError(f"learn_width=True needs rec_delays='learned': with "
                             f"rec_delays={self.rec_delays!r} the recurrent kernel is one fixed "
                             f"tap (sigma 0) and has no width to learn")
        if not self.clamp_delays and self.rec_delays == "learned":
            raise ValueError("clamp_delays=False with rec_delays='learned': an optimiser step "
                             "can make a recurrent delay negative, which the forward refuses "
                             "(acausal: it would act before lag 1); keep clamp_delays=True (the "
                             "projection after every step) or fix the delays")

    def _check_delay_init_args(self) -> None:
        args = self.delay_init_args
        want = 2 if self.delay_init == "uniform" else 1
        if not isinstance(args, (tuple, list)) or len(args) != want:
            raise ValueError(f"delay_init_args: delay_init={self.delay_init!r} takes {want} "
                             f"argument(s) (steps), got {args!r}")
        for k, a in enumerate(args):
            check_real_field(f"delay_init_args[{k}]", a, allow_low=True)
        if want == 2 and args[0] > args[1]:
            raise ValueError(f"delay_init_args = {tuple(args)!r}: the uniform range (low, high) "
                             f"needs low <= high")

    @classmethod
    def shd(cls, **changes) -> DelRecConfig:
        """SHD, large model (SEEDS B2): 140 → 256 → 256 (recurrent delays) → 20."""
        return replace(cls(), **changes)

    @classmethod
    def ssc(cls, **changes) -> DelRecConfig:
        """SSC: 140 → 3 × 256 (recurrent delays, p_spread) → 35, Δt = 1.4 s / 249 bins."""
        base = cls(
            n_in=140, hidden=(256, 256, 256), n_out=35, recurrent=(True, True, True),
            dt=1.4 / 249, tau_steps=2.0, reset="subtract", batch_norm=False, bias=True,
            ff_dropout=0.1, dropout_position="before_neuron", rec_dropout=0.3,
            readout="linear", surrogate="triangle", surrogate_scale=1.0, detach_reset=False,
            learn_width=True, delay_init="half_normal", delay_init_args=(12.0,),
            epochs=100, batch_size=128, optimiser="adam", lr=1e-3,
            weight_decay=1e-5, bn_weight_decay=1e-5, delay_optimiser="adam",
            delay_scheduler="onecycle",
        )
        return replace(base, **changes)

    @classmethod
    def psmnist(cls, **changes) -> DelRecConfig:
        """PS-MNIST: 1 → [64, 212, 212] (recurrent delays, p_spread) → 10, 784 steps."""
        base = replace(
            cls.ssc(), n_in=1, hidden=(64, 212, 212), n_out=10, dt=1e-3, rec_dropout=0.2,
            epochs=200, batch_size=256, optimiser="adamw", lr=1e-3, weight_decay=1e-2,
            bn_weight_decay=1e-2, delay_optimiser="adamw",
        )
        return replace(base, **changes)


# --------------------------------------------------------------------------- building blocks


def _surrogate(config: DelRecConfig) -> Surrogate:
    if config.surrogate == "atan":
        return atan(alpha=config.surrogate_scale)
    return triangle(width=config.surrogate_scale)


def _delay_init(config: DelRecConfig):
    dt = config.dt
    if config.delay_init == "uniform":
        lo, hi = config.delay_init_args
        return uniform_delays(lo * dt, hi * dt)
    return half_normal_delays(config.delay_init_args[0] * dt)


def _recurrent(config: DelRecConfig, n: int) -> RecurrentDense:
    """The delayed recurrence of one hidden layer, by :attr:`DelRecConfig.rec_delays`."""
    learned = config.rec_delays == "learned"
    rec = RecurrentDense(
        n, kernel=Triangle(config.sigma_init if learned else 0.0), dt=config.dt, per="axon",
        learn_delay=learned, learn_width=config.learn_width,
        delay_init=_delay_init(config) if config.rec_delays != "none" else 0.0,
        dropout=config.rec_dropout, eval_mode=config.eval_mode,
    )
    if config.rec_delays == "fixed_random":  # whole steps: one tap at lag 1 + d, train and eval
        rec.round_()
    return rec


# --------------------------------------------------------------------------- network
class DelRecNet(nn.Module):
    """A DelRec network (see the module docstring).

    Args:
        config: hyper-parameters (``DelRecConfig.shd()``, ``.ssc()``, ``.psmnist()``).

    ``forward(x)`` takes ``x [T, B, n_in]`` (spike counts or real features) and returns
    ``[T, B, n_out]``: the readout membrane (``readout="membrane"``) or per-step logits
    (``"linear"``); :meth:`loss` and :meth:`predict` pick the matching loss / decision.
    ``forward_with_spikes`` also returns every hidden layer's spikes (for a spike penalty).
    ``layers[i]`` is the hidden :class:`ctsnn.Layer`; its ``recurrent`` is a
    :class:`~ctsnn.synapses.RecurrentDense` or ``None``.
    """

    def __init__(self, config: DelRecConfig | None = None) -> None:
        super().__init__()
        cfg = config or DelRecConfig.shd()
        self.config = cfg
        after = cfg.dropout_position == "after_neuron"
        sizes = (cfg.n_in, *cfg.hidden)
        self.layers = nn.ModuleList()
        for k, n in enumerate(cfg.hidden):
            synapse = LinearSynapse(
                sizes[k], n, bias=cfg.bias, batch_norm=cfg.batch_norm,
                input_dropout=cfg.ff_dropout if after and k > 0 else 0.0,
                output_dropout=0.0 if after else cfg.ff_dropout,
                shared_dropout=cfg.shared_dropout,
            )
            neurons = LIF(n, tau_mem=cfg.tau_steps * cfg.dt, v_threshold=1.0, v_reset=0.0,
                          reset=cfg.reset)
            rec = _recurrent(cfg, n) if cfg.recurrent[k] else None
            self.layers.append(Layer(neurons, synapse, recurrent=rec, method="euler",
                                     surrogate=_surrogate(cfg), detach_reset=cfg.detach_reset))
        self.readout = LinearSynapse(
            cfg.hidden[-1], cfg.n_out, bias=cfg.bias,
            input_dropout=cfg.ff_dropout if after else 0.0, shared_dropout=cfg.shared_dropout,
        )
        self.readout_neurons = (
            LIF(cfg.n_out, tau_mem=cfg.tau_steps * cfg.dt, v_threshold=cfg.readout_threshold)
            if cfg.readout == "membrane" else None
        )

    # ----------------------------------------------------------------- forward
    def forward_with_spikes(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(output [T, B, n_out], [spikes [T, B, n_l] per hidden layer])``."""
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[2] != self.config.n_in:
            raise ValueError(f"x has {x.shape[2]} channels, the network expects "
                             f"{self.config.n_in} (shape {list(x.shape)}, time-first [T, B, N])")
        spikes: list[Tensor] = []
        h = x
        for layer in self.layers:
            h = layer(h, dt=self.config.dt, input_as="jump")[0].raster()
            spikes.append(h)
        z = self.readout.jumps(h)
        if self.readout_neurons is None:
            return z, spikes
        result = run_population(
            self.readout_neurons, dt=self.config.dt, n_steps=z.shape[0], batch_size=z.shape[1],
            jumps=z, method="euler", record=("v",), dtype=z.dtype, device=z.device,
        )
        return result.states["v"], spikes

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_spikes(x)[0]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The paper's loss for this readout: :func:`~ctsnn.losses.summed_softmax_cross_entropy`
        (membrane) or :func:`~ctsnn.losses.summed_logits_cross_entropy` (linear)."""
        if self.config.readout == "membrane":
            return summed_softmax_cross_entropy(output, target)
        return summed_logits_cross_entropy(output, target)

    def predict(self, output: Tensor) -> Tensor:
        """Predicted classes ``[B]`` from the output ``[T, B, n_out]``."""
        if self.config.readout == "membrane":
            return summed_softmax_prediction(output)
        return summed_logits_prediction(output)

    # ----------------------------------------------------------------- delays
    def recurrent_modules(self) -> list[RecurrentDense]:
        """The delayed recurrent connections, first layer first."""
        return [m for m in self.modules() if isinstance(m, RecurrentDense)]

    def set_sigma(self, sigma: float) -> None:
        """Set σ (steps) of every recurrent connection."""
        for m in self.recurrent_modules():
            m.set_sigma(sigma)

    def sigma_schedule(self, epochs: int | None = None) -> DelRecSigmaSchedule | None:
        """σ per epoch (steps) over ``epochs`` (default: the config's), from ``sigma_init``;
        ``None`` for the ablations (``rec_delays`` other than ``"learned"``: σ stays 0)."""
        if self.config.rec_delays != "learned":
            return None
        return DelRecSigmaSchedule(self.config.epochs if epochs is None else epochs,
                                   sigma_init=self.config.sigma_init)

    def start_epoch(self, epoch: int, epochs: int | None = None) -> float:
        """Apply the σ schedule at the start of epoch ``epoch`` (0-based); returns σ (0 for the
        ablations, which have no schedule)."""
        schedule = self.sigma_schedule(epochs)
        if schedule is None:
            return 0.0
        sigma = schedule.sigma(epoch)
        self.set_sigma(sigma)
        return sigma


# --------------------------------------------------------------------------- training recipe
def delrec_optimisers(model: DelRecNet, epochs: int | None = None) -> WeightDelayOptimiser:
    """Optimisers and per-epoch schedulers of SEEDS B2 for ``model``; use it like this::

        opt = delrec_optimisers(model)
        for epoch in range(model.config.epochs):
            opt.start_epoch(epoch)          # sigma schedule
            model.train()
            for x, y in batches:
                opt.zero_grad(); model.loss(model(x), y).backward(); opt.step()
            opt.end_epoch()                 # schedulers (once per epoch)

    Weights: Adam/AdamW(``lr``, ``weight_decay``; BatchNorm parameters ``bn_weight_decay``)
    under ``OneCycleLR(max_lr=lr, total_steps=epochs)`` (starts at ``lr/25``). Delays and
    ``p_spread``: Adam/AdamW(``lr_delay``, no decay) under ``CosineAnnealingLR(T_max=epochs)``
    (SHD) or ``OneCycleLR`` (SSC/PS-MNIST). ``step`` projects the delays into ``[0, max]``
    (:func:`~ctsnn.clamp_delays_`, every preset, see the module docstring). σ follows
    :meth:`DelRecNet.sigma_schedule` over the same ``epochs`` as the learning-rate
    schedules, applied by ``start_epoch`` (none for the ablations).

    Args:
        model: a :class:`DelRecNet`.
        epochs: run length for every schedule (learning rates and σ); default
            ``model.config.epochs``.
    """
    if not isinstance(model, DelRecNet):
        raise TypeError(f"model must be a DelRecNet, got {type(model).__name__}")
    cfg = model.config
    if epochs is None:
        epochs = cfg.epochs
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    schedule = model.sigma_schedule(epochs)
    recipe = WeightDelayRecipe(
        lr=cfg.lr, lr_delay=cfg.lr_delay, optimiser=cfg.optimiser, weight_decay=cfg.weight_decay,
        norm_weight_decay=cfg.bn_weight_decay, delay_optimiser=cfg.delay_optimiser,
        delay_scheduler=cfg.delay_scheduler, sigma_update="epoch_start",
    )
    return recipe.build(model, epochs, delays=delay_parameters(model),
                        clamp=partial(clamp_delays_, model) if cfg.clamp_delays else None,
                        sigma=schedule, set_sigma=None if schedule is None else model.set_sigma)


__all__ = [
    "DelRecConfig", "DelRecNet", "delrec_optimisers",
]
