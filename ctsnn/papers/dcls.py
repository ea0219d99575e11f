"""DCLS-Delays (Hammouamri, Khalfaoui-Hassani & Masquelier, ICLR 2024) built from ctsnn parts.

Architecture (SEEDS A2), time-first ``[T, B, N]`` tensors, grid step ``dt``:

* per hidden layer: :class:`~ctsnn.synapses.Dense` (Gaussian kernel, one learnable delay
  per synapse) -> ``BatchNorm1d`` over channels (statistics over ``T x B``) -> LIF
  ``u[t] = (1 - 1/tau) u[t-1] + I[t]`` (``tau`` in steps, input not divided by ``tau``),
  threshold 1, hard reset to 0, arctan surrogate ``alpha = 5``, ``detach_reset``) -> dropout
  whose mask is shared over time;
* readout: ``Dense`` -> LIF with threshold ``1e9`` (never fires); its membrane trace
  ``u[t]`` over all (padded) steps is the output; loss = cross-entropy of the time-summed
  softmax ``sum_t softmax(u[t])`` (:func:`ctsnn.losses.summed_softmax_cross_entropy`, SEEDS
  A1.7; prediction :func:`ctsnn.losses.summed_softmax_prediction`).

Each layer's input is right-padded with ``(K - 1) // 2`` zero steps, so late spikes still arrive
and every layer adds that many output steps (SHD: +12, SSC/GSC: +15).

The LIF runs on the ctsnn engine (:class:`ctsnn.Layer` with ``method="euler"``, spikes as
end-of-step jumps) with ``tau_mem = tau`` seconds, which is exactly the update above.

Training recipe (:func:`dcls_optimisers`, a :class:`~ctsnn.training.WeightDelayRecipe`): weights
(and biases) Adam ``lr 1e-3``, weight decay ``1e-5`` (BatchNorm parameters: 0) under
``OneCycleLR(max_lr = 5e-3, total_steps = epochs)``; delays Adam ``lr 0.1`` (in steps) without
weight decay under ``CosineAnnealingLR(T_max = epochs)``; both schedulers stepped once per epoch;
delays clamped to ``[0, K - 1]`` after every optimiser step; the Gaussian width follows
:class:`~ctsnn.training.DCLSSigmaSchedule` (``sig_init = K // 2`` -> 0.23 over ``epochs // 4``
epochs, ``sigma_eff = SIG + 0.27``).
Evaluation (``model.eval()``) uses rounded one-tap delays without changing the trained ones.

Ablations (SEEDS A3, paper Fig. 5) are one option, :attr:`DCLSConfig.delays`: ``"learned"`` (the
full method), ``"constant_sigma"`` (Gaussian width fixed at 0.5 step, no schedule),
``"fixed_random"`` (random whole-step delays, never trained, one tap in training and
evaluation), ``"none"`` (plain linear synapses); "fixed weights" is ``learn_weight=False`` and the
sparse variant ``fan_in=10``. :func:`dcls_optimisers` applies the matching width schedule.

Differences from the reference code, on purpose: delays are trained as ``d`` in steps instead of
the centred position ``P = (K - 1)/2 - d`` (equivalent under Adam); the evaluation kernel is the
exact ``w`` instead of ``w / (1 + 1e-7)``; evaluation never writes a checkpoint to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_tensor
from ..dropout import SequenceDropout
from ..engine import run_population
from ..engine.compiled.bn_lif import bn_lif, bn_lif_applies
from ..models.lif import LIF
from ..network import Layer, clamp_delays_, delay_parameters
from ..surrogate import atan
from ..synapses import Dense, Gaussian, NormalisedSynapse
from ..synapses.dense import GRID_DELAY_INITS
from ..synapses.kernels import DCLS_SIGMA_OFFSET, as_kernel, kernel_size
from ..training import DCLSSigmaSchedule, WeightDelayOptimiser, WeightDelayRecipe
from .checks import check_bool_field, check_choice_field, check_int_field, check_real_field

#: Training kernels of the delayed synapses (:attr:`DCLSConfig.kernel`).
KERNELS = ("gaussian", "triangle", "rounded")
#: The delay variants, i.e. the paper's ablations (:attr:`DCLSConfig.delays`).
DELAY_VARIANTS = ("learned", "constant_sigma", "fixed_random", "none")

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DCLSConfig:
    """Hyper-parameters of a DCLS network (times in seconds; defaults: SHD, SEEDS A2).

    Attributes:
        n_in, n_hidden, n_layers, n_out: input channels, hidden width, hidden layers, classes.
        dt: grid step (s). tau: membrane time constant (s); ``tau / dt`` steps.
        max_delay: delay window (s); ``K = max_delay / dt`` taps, made odd.
        dropout: dropout probability (mask shared over time).
        pad: right-pad each layer's input by ``(K - 1) // 2`` steps.
        kernel: training kernel of the delayed synapses (``"gaussian"`` in the paper) when
            ``delays`` is ``"learned"`` or ``"constant_sigma"``.
        delays: the delay variant, i.e. the paper's ablations (SEEDS A3, Fig. 5), each the same
            model in training and evaluation except where the paper's own model differs:

            * ``"learned"`` (the full method): learnable delays through ``kernel`` with the
              decreasing-sigma schedule; rounded one-tap delays in ``eval()``.
            * ``"constant_sigma"``: as ``"learned"`` with the Gaussian width fixed at its floor,
              ``sigma_eff = sig_end + 0.27`` (0.5 step), from construction on; no schedule.
            * ``"fixed_random"``: delays drawn by ``delay_init``, rounded to whole steps and
              never trained, applied as one tap (kernel ``Rounded``) in training *and*
              evaluation; no Gaussian, no sigma.
            * ``"none"``: plain linear synapses (``w x[t]`` reaches the neurons in step ``t``),
              no delays, no kernel, no sigma; ``max_delay`` still sets the padding.

            "Fixed weights" is ``learn_weight=False``; the sparse ablation is ``fan_in=10``.
        learn_delay, learn_weight: what is trained (``learn_delay`` only with ``"learned"`` /
            ``"constant_sigma"``; fixed delays need a kernel that is the same in training and
            evaluation, ``kernel="rounded"``: else use ``delays="fixed_random"``).
        fan_in: fixed fan-in of the hidden and readout synapses (sparse ablation: 10).
        delay_init: see :class:`~ctsnn.synapses.Dense` (``"uniform"`` over the window).
        epochs, batch_size: training length (the schedules depend on ``epochs``).
        lr, weight_decay, max_lr, lr_delay: optimiser recipe (:func:`dcls_optimisers`).
        sig_end: floor of the DCLS ``SIG``; decay over ``epochs // 4`` epochs from ``K // 2``
            (``"constant_sigma"``: ``SIG = sig_end`` throughout).
        surrogate_alpha, threshold, readout_threshold: neuron settings.
    """

    n_in: int = 140
    n_hidden: int = 256
    n_layers: int = 2
    n_out: int = 20
    dt: float = 0.01
    tau: float = 0.01005
    max_delay: float = 0.25
    dropout: float = 0.4
    pad: bool = True
    kernel: str = "gaussian"
    delays: str = "learned"
    learn_delay: bool = True
    learn_weight: bool = True
    fan_in: int | None = None
    delay_init: str | float = "uniform"
    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_lr: float = 5e-3
    lr_delay: float = 0.1
    sig_end: float = 0.23
    surrogate_alpha: float = 5.0
    threshold: float = 1.0
    readout_threshold: float = 1e9

    def __post_init__(self) -> None:
        for name in ("n_in", "n_hidden", "n_layers", "n_out", "epochs", "batch_size"):
            check_int_field(name, getattr(self, name))
        if self.fan_in is not None:
            check_int_field("fan_in", self.fan_in)
        for name in ("dt", "tau", "lr", "max_lr", "lr_delay", "sig_end", "surrogate_alpha",
                     "threshold", "readout_threshold"):
            check_real_field(name, getattr(self, name))
        check_real_field("max_delay", self.max_delay, allow_low=True)
        check_real_field("weight_decay", self.weight_decay, allow_low=True)
        check_real_field("dropout", self.dropout, allow_low=True, high=1.0)
        for name in ("pad", "learn_delay", "learn_weight"):
            check_bool_field(name, getattr(self, name))
        check_choice_field("kernel", self.kernel, KERNELS)
        check_choice_field("delays", self.delays, DELAY_VARIANTS)
        if isinstance(self.delay_init, str):
            check_choice_field("delay_init", self.delay_init, GRID_DELAY_INITS)
        else:
            check_real_field("delay_init", self.delay_init, allow_low=True, high=self.max_delay,
                             allow_high=True)
        try:
            self.kernel_size  # noqa: B018 - max_delay must be a whole number of steps
        except ValueError as err:
            raise ValueError(f"max_delay: {err}") from None
        if self.delays == "constant_sigma" and self.kernel != "gaussian":
            raise ValueError(f"delays='constant_sigma' fixes the Gaussian width; it needs "
                             f"kernel='gaussian', got kernel={self.kernel!r}")
        if self.delays in ("learned", "constant_sigma") and not self.learn_delay \
                and self.kernel != "rounded":
            raise ValueError(
                f"learn_delay=False with kernel={self.kernel!r} trains with a spread kernel and "
                "evaluates with rounded one-tap delays (two different models): use "
                "delays='fixed_random' (fixed one-tap random delays), delays='none' (no delays) "
                "or kernel='rounded'")

    @property
    def kernel_size(self) -> int:
        """``K`` (odd): 25 for SHD, 31 for SSC/GSC."""
        return kernel_size(self.max_delay, self.dt)

    @property
    def pad_steps(self) -> int:
        """Zero steps appended to every layer's input: ``(K - 1) // 2`` or 0."""
        return (self.kernel_size - 1) // 2 if self.pad else 0

    @property
    def tau_steps(self) -> float:
        """Membrane time constant in steps (SHD 1.005, SSC/GSC 1.5)."""
        return self.tau / self.dt

    def sigma_schedule(self, epochs: int | None = None) -> DCLSSigmaSchedule | None:
        """The published schedule for a run of ``epochs`` (default: :attr:`epochs`) epochs:
        ``SIG`` from ``K // 2`` to ``sig_end`` over ``epochs // 4``; ``"constant_sigma"``:
        ``SIG = sig_end`` throughout; ``None`` without a Gaussian kernel (``"fixed_random"``,
        ``"none"``, or another ``kernel``)."""
        if epochs is None:
            epochs = self.epochs
        check_int_field("epochs", epochs)
        if self.delays in ("fixed_random", "none") or self.kernel != "gaussian":
            return None
        if self.delays == "constant_sigma":
            return DCLSSigmaSchedule(sig_init=self.sig_end, decay_epochs=0, sig_end=self.sig_end)
        return DCLSSigmaSchedule(sig_init=float(self.kernel_size // 2),
                                 decay_epochs=epochs // 4, sig_end=self.sig_end)

    @classmethod
    def shd(cls, **changes) -> DCLSConfig:
        """SHD: 140 inputs, 2 x 256, 20 classes, tau 10.05 ms, 250 ms / K 25, dropout 0.4."""
        return replace(cls(), **changes)

    @classmethod
    def ssc(cls, n_layers: int = 3, **changes) -> DCLSConfig:
        """SSC: 140 inputs, ``n_layers`` x 512, 35 classes, tau 15 ms, 300 ms / K 31."""
        return replace(cls(n_hidden=512, n_layers=n_layers, n_out=35, tau=0.015,
                           max_delay=0.3, dropout=0.25, epochs=60, batch_size=128), **changes)

    @classmethod
    def gsc(cls, n_layers: int = 3, **changes) -> DCLSConfig:
        """GSC-35: as SSC with 140 mel bins, 100 epochs."""
        return replace(cls.ssc(n_layers), epochs=100, **changes)


# --------------------------------------------------------------------------- building blocks
def _delayed(model: nn.Module) -> list[Dense]:
    """The grid-kernel (DCLS-style) ``Dense`` synapses of ``model``, input to output."""
    return [m for m in model.modules() if isinstance(m, Dense) and m.kernel.grid]


def _synapse_options(cfg: DCLSConfig, generator: torch.Generator | None,
                     dtype: torch.dtype) -> dict:
    """Keyword arguments of every :class:`~ctsnn.synapses.Dense` of the network, by
    :attr:`DCLSConfig.delays`."""
    common = dict(learn_weight=cfg.learn_weight, generator=generator, dtype=dtype)
    if cfg.delays == "none":                     # plain linear synapses: no delays, no kernel
        return common
    if cfg.delays == "fixed_random":             # fixed one-tap delays (rounded at build)
        return common | dict(max_delay=cfg.max_delay, dt=cfg.dt, kernel="rounded",
                             learn_delay=False, delay_init=cfg.delay_init)
    if cfg.kernel == "gaussian":
        sig = cfg.sig_end if cfg.delays == "constant_sigma" else float(cfg.kernel_size // 2)
        kernel = Gaussian(sig + DCLS_SIGMA_OFFSET)
    else:
        kernel = as_kernel(cfg.kernel)
    return common | dict(max_delay=cfg.max_delay, dt=cfg.dt, kernel=kernel,
                         learn_delay=cfg.learn_delay, delay_init=cfg.delay_init)


def _pad_time(x: Tensor, steps: int) -> Tensor:
    """Append ``steps`` zero steps to a ``[T, B, N]`` tensor."""
    return F.pad(x, (0, 0, 0, 0, 0, steps)) if steps else x


class DCLSNet(nn.Module):
    """The DCLS SHD/SSC/GSC network (see the module docstring).

    Args:
        config: hyper-parameters (``DCLSConfig.shd()``, ``.ssc()``, ``.gsc()`` or custom).
        generator: random generator for weights, delays and fan-in masks.
        dtype: parameter dtype (default: torch's default).

    ``forward(x)`` takes ``x [T, B, n_in]`` (binned spike counts or real features) and returns
    the readout membrane ``[T + (n_layers + 1) * pad, B, n_out]``; feed it to
    :func:`ctsnn.losses.summed_softmax_cross_entropy` /
    :func:`~ctsnn.losses.summed_softmax_prediction`. ``blocks[i].layer`` is the hidden
    :class:`ctsnn.Layer` and :meth:`delayed` lists every grid-kernel
    :class:`~ctsnn.synapses.Dense`.
    """

    def __init__(self, config: DCLSConfig | None = None, *,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        cfg = config or DCLSConfig()
        if not isinstance(cfg, DCLSConfig):
            raise TypeError(f"config must be a DCLSConfig, got {type(cfg).__name__}")
        self.config = cfg
        dtype = dtype or torch.get_default_dtype()
        syn_kw = _synapse_options(cfg, generator, dtype)
        surrogate = atan(cfg.surrogate_alpha)
        self.blocks = nn.ModuleList()
        n_prev = cfg.n_in
        for _ in range(cfg.n_layers):
            fan_in = None if cfg.fan_in is None else min(cfg.fan_in, n_prev)
            syn = NormalisedSynapse(Dense(n_prev, cfg.n_hidden, fan_in=fan_in, **syn_kw))
            lif = LIF(cfg.n_hidden, tau_mem=cfg.tau, v_threshold=cfg.threshold, v_reset=0.0)
            block = nn.Module()
            block.layer = Layer(lif, syn, method="euler", surrogate=surrogate,
                                detach_reset=True)
            block.dropout = SequenceDropout(cfg.dropout)  # mask shared over time
            self.blocks.append(block)
            n_prev = cfg.n_hidden
        fan_in = None if cfg.fan_in is None else min(cfg.fan_in, n_prev)
        self.readout = Dense(n_prev, cfg.n_out, fan_in=fan_in, **syn_kw)
        self.readout_lif = LIF(cfg.n_out, tau_mem=cfg.tau, v_threshold=cfg.readout_threshold,
                               v_reset=0.0)
        if cfg.delays == "fixed_random":
            with torch.no_grad():  # whole steps: one tap, the same in training and evaluation
                for m in self.delayed():
                    m.delay_steps.copy_(torch.round(m.delay_steps))
        self.to(dtype)

    def delayed(self) -> list[Dense]:
        """Every delayed synapse module, input to output."""
        return _delayed(self)

    def set_sigma(self, sigma_eff: float) -> None:
        """Set the Gaussian width (steps) of every delayed synapse."""
        for m in self.delayed():
            if isinstance(m.kernel, Gaussian):
                m.set_sigma(sigma_eff)

    def output_steps(self, n_steps: int) -> int:
        """Readout length for ``n_steps`` input steps."""
        return n_steps + (self.config.n_layers + 1) * self.config.pad_steps

    def _hidden(self, block: nn.Module, x: Tensor) -> tuple[Tensor, bool, Tensor | None]:
        """One hidden block on its padded input: ``(output [T', B, n_hidden], padded, rows)``,
        the output after dropout, already right-padded for the next layer if ``padded``, and
        the dropout's kept (sample, unit) rows (bool ``[B, n_hidden]``, None if it drops
        nothing; see :meth:`~ctsnn.dropout.SequenceDropout.with_rows`). In
        training (and in evaluation without autograd), BatchNorm, the LIF, the dropout and
        that padding run as one kernel (:func:`~ctsnn.engine.compiled.bn_lif.bn_lif`: only
        the synapses' output is kept for the backward pass, and no normalised copy is made;
        equal to the modules to rounding)."""
        layer, syn, drop = block.layer, block.layer.synapse, block.dropout
        if isinstance(syn, NormalisedSynapse) and layer.recurrent is None and drop.shared \
                and bn_lif_applies(x, syn.norm, layer.model, method=layer.method,
                                   surrogate=layer.surrogate):
            y = syn.synapse.jumps(x)
            keep = drop.shared_mask(y)  # None where the dropout is the identity
            return bn_lif(y, syn.norm, layer.model, dt=self.config.dt, method=layer.method,
                          surrogate=layer.surrogate, detach_reset=bool(layer.detach_reset),
                          keep=keep, p=0.0 if keep is None else drop.p,
                          pad=self.config.pad_steps), True, None if keep is None else keep != 0
        h, rows = drop.with_rows(layer(x, dt=self.config.dt, input_as="jump")[0].raster())
        return h, False, rows

    def forward(self, x: Tensor) -> Tensor:
        """``x [T, B, n_in]`` -> readout membrane ``[T', B, n_out]`` (see class docstring)."""
        cfg = self.config
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[2] != cfg.n_in:
            raise ValueError(f"x has {x.shape[2]} channels but the network expects n_in = "
                             f"{cfg.n_in} (shape {list(x.shape)}, time-first [T, B, N])")
        pad = cfg.pad_steps
        h, padded = x, False
        rows = None  # the (sample, unit) rows the previous dropout kept: the only ones whose
        # gradient the next synapse needs to compute (the dropout zeroes the others)
        for block in self.blocks:
            # The engine simulates as many steps as its input has, so the right padding is
            # applied to the input (identical to padding the convolution).
            with block.layer.synapse.input_rows(rows):
                h, padded, rows = self._hidden(block, h if padded else _pad_time(h, pad))
        h = h if padded else _pad_time(h, pad)
        with self.readout.input_rows(rows):
            jumps = self.readout.jumps(h)
        result = run_population(
            self.readout_lif, dt=cfg.dt, n_steps=h.shape[0], batch_size=h.shape[1],
            jumps=jumps, method="euler", record=("v",), dtype=h.dtype,
            device=h.device,
        )
        return result.states["v"]


# --------------------------------------------------------------------------- training recipe
def dcls_optimisers(
    model: nn.Module,
    epochs: int,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    max_lr: float = 5e-3,
    lr_delay: float = 0.1,
    sigma: DCLSSigmaSchedule | None = None,
) -> WeightDelayOptimiser:
    """The DCLS optimisers and schedules for ``model``; use it like this::

        opt = dcls_optimisers(model, epochs)
        for epoch in range(epochs):
            model.train()
            for x, y in batches:
                opt.zero_grad(); summed_softmax_cross_entropy(model(x), y).backward(); opt.step()
            opt.end_epoch()       # schedulers + next epoch's sigma

    * weights and biases: Adam(``lr``, weight decay ``weight_decay``); BatchNorm parameters:
      same Adam, decay 0; ``OneCycleLR(max_lr, total_steps=epochs)`` (PyTorch defaults: starts at
      ``max_lr / 25``, peaks at 30 % of the epochs, cosine-anneals to ``max_lr / 25e4``; also
      cycles Adam's beta1).
    * delays (steps): Adam(``lr_delay``, no decay), ``CosineAnnealingLR(T_max=epochs)``.
    * every optimiser step clamps the delays to the window and re-applies fan-in masks.
    * ``sigma``: default, for a :class:`DCLSNet`, its config's schedule over ``epochs``
      (:meth:`DCLSConfig.sigma_schedule`: ``K // 2 -> sig_end`` over ``epochs // 4`` epochs, or
      constant for ``delays="constant_sigma"``, none for ``"fixed_random"`` / ``"none"``); for
      another model the published ``K // 2 -> 0.23`` (``K`` of its first delayed module).
      Applied to the model at once for epoch 0, then by every ``end_epoch`` for the next epoch.

    A :class:`DCLSNet` with ``delays="none"`` has no delayed synapse and trains its weights only.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    delayed = _delayed(model)
    config = getattr(model, "config", None)
    if not delayed and not (isinstance(config, DCLSConfig) and config.delays == "none"):
        raise ValueError("the model has no delayed grid-kernel Dense synapse")
    if sigma is not None:
        schedule = sigma
    elif isinstance(config, DCLSConfig):
        schedule = config.sigma_schedule(epochs)
    else:
        schedule = DCLSSigmaSchedule.for_run(delayed[0].kernel_size, epochs)

    def set_sigma(value: float) -> None:
        for m in delayed:
            if isinstance(m.kernel, Gaussian):
                m.set_sigma(value)

    recipe = WeightDelayRecipe(lr=lr, lr_delay=lr_delay, optimiser="adam",
                               weight_decay=weight_decay, max_lr=max_lr, delay_optimiser="adam",
                               delay_scheduler="cosine", sigma_update="epoch_end")
    opt = recipe.build(model, epochs, delays=delay_parameters(model),
                       clamp=partial(clamp_delays_, model), sigma=schedule,
                       set_sigma=None if schedule is None else set_sigma)
    opt.apply_sigma()
    return opt


__all__ = ["DCLSConfig", "DCLSNet", "dcls_optimisers"]
