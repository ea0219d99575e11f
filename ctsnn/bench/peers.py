"""Peer implementations (references) of the W1/W3/W4 workloads, and helpers shared by them.

Every peer is built from the documented public API of its PyPI package (installed with the
``bench`` extra: ``pip install -e .[bench]``); nothing is copied from their repositories:

* :class:`DCLSReferenceNet` — W1's reference, SEEDS A1/A2: ``DCLS.construct.modules.Dcls1d``
  (``version="gauss"``, one tap per synapse, dilated kernel ``K = 25``, input left-padded by
  ``K - 1`` and right-padded by ``(K - 1) // 2``) -> ``BatchNorm1d`` -> SpikingJelly
  ``LIFNode`` (multi-step, ``decay_input=False``, hard reset to 0, ``ATan(alpha=5)``,
  ``detach_reset``) -> SpikingJelly ``Dropout`` (mask shared over time); readout ``Dcls1d`` ->
  ``LIFNode`` with threshold 1e9 whose membrane trace (``store_v_seq``) is the output.
* :func:`spikingjelly_lif_net`, :func:`snntorch_lif_net`, :func:`norse_lif_net` — W4's plain
  140 -> 256 -> 256 -> 20 LIF networks (no delays, no bias) with the *same* weights as ours
  (:func:`plain_weights`), so their spike counts can be compared.

Helpers: :func:`module_version` (is a peer importable), :func:`saved_tensor_bytes`
(saved-for-backward memory through ``torch.autograd.graph.saved_tensors_hooks``) and
:func:`matmul_peak` (the fp32 matrix-multiply rate of this run, for the roofline). The timing
and reporting protocol is in :mod:`ctsnn.bench.harness`; the benchmarks' random input is
:func:`ctsnn.data.bernoulli_input`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsnn.losses import summed_softmax_cross_entropy

from .harness import time_call

__all__ = [
    "DCLSReferenceNet",
    "PEER_PACKAGES",
    "dcls_reference_status",
    "import_error",
    "matmul_peak",
    "module_version",
    "norse_lif_net",
    "plain_weights",
    "saved_tensor_bytes",
    "snntorch_lif_net",
    "spikingjelly_lif_net",
]

#: import name -> distribution name of the peers (the ``bench`` extra).
PEER_PACKAGES = {
    "DCLS": "dcls",
    "spikingjelly": "spikingjelly",
    "snntorch": "snntorch",
    "norse": "norse",
}


# --------------------------------------------------------------------------- helpers
def module_version(module: str) -> str | None:
    """Version of an importable peer (``"DCLS"``, ``"spikingjelly"``, ...), else None.

    The import itself is tried (a package that installs but fails to import with this torch
    counts as unavailable); the error is not raised.
    """
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    dist = PEER_PACKAGES.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def import_error(module: str) -> str | None:
    """The error message of importing ``module``, or None if it imports."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None




def saved_tensor_bytes(forward: Callable[[], Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Run ``forward()`` (forward pass and loss) and measure what autograd saves for backward.

    Every tensor packed by autograd (``torch.autograd.graph.saved_tensors_hooks``) is recorded:
    ``saved_mib`` sums the distinct storages (a tensor saved by several nodes, or a view of a
    saved tensor, counts once; parameters count too), ``saved_naive_mib`` sums
    ``numel * element_size`` of every packed tensor. Tensors kept by a custom autograd function
    as plain ``ctx`` attributes are invisible to the hooks.

    Returns:
        ``(loss, {"saved_mib", "saved_naive_mib", "n_saved"})``; call ``loss.backward()`` after.
    """
    storages: dict[tuple[int, int], int] = {}
    naive = 0
    count = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal naive, count
        count += 1
        naive += t.numel() * t.element_size()
        try:
            st = t.untyped_storage()
            storages[(st.data_ptr(), st.nbytes())] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # e.g. sparse or wrapper tensors
            storages[(id(t), 0)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    mib = 1024.0**2
    return loss, {
        "saved_mib": sum(storages.values()) / mib,
        "saved_naive_mib": naive / mib,
        "n_saved": count,
    }


def matmul_peak(n: int = 2048, *, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Measured fp32 matrix-multiply rate of this process: ``torch.mm`` of two ``n x n``.

    Returns ``gflops`` (median), ``gflops_best`` (fastest call), ``n`` and the timing.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    stats = time_call(lambda: torch.mm(a, b, out=out), repeats=repeats, warmup=warmup)
    flops = 2.0 * n**3
    return {
        "n": n,
        "gflops": flops / stats["median_s"] / 1e9,
        "gflops_best": flops / stats["min_s"] / 1e9,
        "cpu_per_wall": stats["cpu_per_wall"],
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- W1 reference
class DCLSReferenceNet(nn.Module):
    """The DCLS SHD network from the ``dcls`` and ``spikingjelly`` packages (SEEDS A1/A2).

    Args:
        n_in, n_hidden, n_layers, n_out: sizes (SHD: 140, 256, 2, 20).
        kernel: dilated kernel size ``K`` (SHD: 25, delays 0..24 steps).
        tau: LIF time constant in steps (SHD: 1.005).
        dropout: dropout probability (mask shared over time).
        sig: the library's ``SIG`` (``sigma_eff = SIG + 0.27``); default ``K // 2`` (start of
            training); the published schedule ends at 0.23.
        seed: initialisation seed (weights Kaiming-uniform with ReLU gain, positions
            ``U((-K) // 2, K // 2)`` clamped to ``±K // 2`` as in the reference code).

    ``forward(x [T, B, n_in])`` returns the readout membrane ``[T + (n_layers + 1) * pad, B,
    n_out]``; :meth:`reset_states` clears the neuron states (after every step), :meth:`clamp_`
    clamps the positions, :meth:`to_eval_rounded` switches to the evaluation kernel
    (``SIG = 0``, ``version = "max"``, rounded positions: a one-tap kernel).
    """

    def __init__(self, *, n_in: int = 140, n_hidden: int = 256, n_layers: int = 2,
                 n_out: int = 20, kernel: int = 25, tau: float = 1.005, dropout: float = 0.4,
                 sig: float | None = None, seed: int = 0) -> None:
        super().__init__()
        from DCLS.construct.modules import Dcls1d
        from spikingjelly.activation_based import layer, neuron, surrogate

        torch.manual_seed(seed)
        self.kernel = kernel
        self.pad = (kernel - 1) // 2
        sig = float(kernel // 2) if sig is None else float(sig)
        sizes = [n_in] + [n_hidden] * n_layers
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.lifs = nn.ModuleList()
        self.drops = nn.ModuleList()

        def conv(c_in: int, c_out: int) -> nn.Module:
            m = Dcls1d(c_in, c_out, kernel_count=1, dilated_kernel_size=kernel, bias=False,
                       version="gauss")
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            with torch.no_grad():
                nn.init.uniform_(m.P, (-kernel) // 2, kernel // 2)
                m.P.clamp_(-(kernel // 2), kernel // 2)
                m.SIG.fill_(sig)
            m.SIG.requires_grad_(False)
            return m

        def lif(threshold: float, store: bool) -> nn.Module:
            return neuron.LIFNode(tau=tau, decay_input=False, v_threshold=threshold,
                                  v_reset=0.0, surrogate_function=surrogate.ATan(alpha=5.0),
                                  detach_reset=True, step_mode="m", store_v_seq=store)

        for k in range(n_layers):
            self.convs.append(conv(sizes[k], n_hidden))
            self.norms.append(nn.BatchNorm1d(n_hidden))
            self.lifs.append(lif(1.0, False))
            self.drops.append(layer.Dropout(dropout, step_mode="m"))
        self.readout = conv(n_hidden, n_out)
        self.readout_lif = lif(1e9, True)

    def forward(self, x: Tensor) -> Tensor:
        h = x.permute(1, 2, 0)  # [B, C, T]
        for conv, norm, lif, drop in zip(self.convs, self.norms, self.lifs, self.drops,
                                         strict=True):
            h = norm(conv(F.pad(h, (self.kernel - 1, self.pad))))
            s = drop(lif(h.permute(2, 0, 1).contiguous()))  # [T, B, C]
            h = s.permute(1, 2, 0)
        z = self.readout(F.pad(h, (self.kernel - 1, self.pad)))
        self.readout_lif(z.permute(2, 0, 1).contiguous())
        return self.readout_lif.v_seq

    def reset_states(self) -> None:
        """Clear the neuron states (SpikingJelly ``functional.reset_net``) after every pass."""
        from spikingjelly.activation_based import functional

        functional.reset_net(self)

    def dcls_modules(self) -> list[nn.Module]:
        return [*self.convs, self.readout]

    def positions(self) -> list[nn.Parameter]:
        return [m.P for m in self.dcls_modules()]

    @torch.no_grad()
    def clamp_(self) -> None:
        lim = self.kernel // 2
        for p in self.positions():
            p.clamp_(-lim, lim)

    @torch.no_grad()
    def to_eval_rounded(self) -> DCLSReferenceNet:
        """The reference's evaluation switch: ``SIG = 0``, ``"max"`` kernel, rounded positions."""
        lim = self.kernel // 2
        for m in self.dcls_modules():
            m.SIG.zero_()
            m.version = "max"
            m.DCK.version = "max"
            m.P.copy_(torch.round(m.P).clamp_(-lim, lim))
        return self.eval()

    def count_parameters(self) -> int:
        """Weights + positions + BatchNorm affine (not ``SIG``): the paper's count."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.endswith("SIG"))

    def optimisers(self, *, lr: float = 1e-3, weight_decay: float = 1e-5,
                   lr_delay: float = 0.1) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """The DCLS recipe: Adam on weights (decay) and BN (no decay), Adam(0.1) on positions."""
        weights = [m.weight for m in self.dcls_modules()]
        bn = [p for m in self.norms for p in m.parameters()]
        w_opt = torch.optim.Adam([{"params": weights, "weight_decay": weight_decay},
                                  {"params": bn, "weight_decay": 0.0}], lr=lr)
        p_opt = torch.optim.Adam(self.positions(), lr=lr_delay, weight_decay=0.0)
        return w_opt, p_opt

    def training_step(self, x: Tensor, y: Tensor) -> Callable[[], None]:
        """The timed step of the DCLS recipe: zero both optimisers, forward, time-summed
        softmax loss, backward, both Adam steps, clamp positions, reset the neuron states."""
        w_opt, p_opt = self.optimisers()

        def step() -> None:
            w_opt.zero_grad(set_to_none=True)
            p_opt.zero_grad(set_to_none=True)
            summed_softmax_cross_entropy(self(x), y).backward()
            w_opt.step()
            p_opt.step()
            self.clamp_()
            self.reset_states()

        return step


def dcls_reference_status(wanted: bool, log: Callable[[str], None]
                          ) -> tuple[bool, dict[str, str | None], dict[str, str | None]]:
    """``(use it, versions, import errors)`` of the DCLS + SpikingJelly reference (W1, W2);
    logs why it is skipped when it was wanted but does not import."""
    versions = {m: module_version(m) for m in ("DCLS", "spikingjelly")}
    use = wanted and all(versions.values())
    missing = {m: import_error(m) for m, v in versions.items() if v is None}
    if wanted and not use:
        log(f"reference skipped: not importable: {missing}")
    return use, versions, missing


# --------------------------------------------------------------------------- W4 plain LIF nets
def plain_weights(sizes: Sequence[int], *, seed: int) -> list[Tensor]:
    """Weights ``[n_out, n_in]`` of the W4 network, float32: ``b (U(-1, 1) + 0.12)``.

    ``b = sqrt(6 / n_in)`` is the Kaiming-uniform bound (ReLU gain); the small positive mean
    makes all three layers fire a few per cent of the time under Bernoulli(0.05) input (with a
    zero mean the last two layers stay silent). All W4 implementations get these same tensors,
    so they simulate the same network.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = math.sqrt(6.0 / n_in)
        out.append((torch.rand(n_out, n_in, generator=g, dtype=torch.float64) * 2 - 1 + 0.12)
                   .mul(bound).to(torch.float32))
    return out


def _linear(weight: Tensor, cls: type[nn.Module] = nn.Linear, **kw: Any) -> nn.Module:
    m = cls(weight.shape[1], weight.shape[0], bias=False, **kw)
    with torch.no_grad():
        m.weight.copy_(weight)
    return m


def spikingjelly_lif_net(weights: Sequence[Tensor], *, tau: float = 2.0,
                         alpha: float = 2.0) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """SpikingJelly multi-step ``Linear -> LIFNode`` stack; returns ``(net, run)``.

    ``run(x [T, B, N_in])`` returns the output spikes ``[T, B, N_out]`` and resets the states
    before the pass (``functional.reset_net``). LIF: ``decay_input=False``, hard reset to 0,
    threshold 1, ``ATan(alpha)``.
    """
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    mods: list[nn.Module] = []
    for w in weights:
        mods.append(_linear(w, layer.Linear, step_mode="m"))
        mods.append(neuron.LIFNode(tau=tau, decay_input=False, v_threshold=1.0, v_reset=0.0,
                                   surrogate_function=surrogate.ATan(alpha=alpha),
                                   step_mode="m"))
    net = nn.Sequential(*mods)
    functional.set_step_mode(net, "m")

    def run(x: Tensor) -> Tensor:
        functional.reset_net(net)
        return net(x)

    return net, run


def _python_loop(x: Tensor, fcs: Sequence[nn.Module], cells: Sequence[nn.Module],
                 states: list[Any]) -> Tensor:
    """Step a ``Linear -> cell`` stack through ``x [T, B, N_in]`` in a Python loop, the
    tutorial pattern of snnTorch and Norse: ``h, states[k] = cell(fc(h), states[k])`` per
    layer and step. Returns the output spikes ``[T, B, N_out]``."""
    out = []
    for t in range(x.shape[0]):
        h = x[t]
        for k, (fc, cell) in enumerate(zip(fcs, cells, strict=True)):
            h, states[k] = cell(fc(h), states[k])
        out.append(h)
    return torch.stack(out)


def snntorch_lif_net(weights: Sequence[Tensor], *, tau: float = 2.0,
                     alpha: float = 2.0) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """snnTorch ``nn.Linear -> Leaky`` stack stepped in a Python loop (its tutorial pattern).

    ``Leaky(beta = 1 - 1/tau, reset_mechanism="zero", spike_grad=surrogate.atan(alpha))``.
    """
    import snntorch as snn
    from snntorch import surrogate

    beta = 1.0 - 1.0 / tau
    fcs = nn.ModuleList(_linear(w) for w in weights)
    lifs = nn.ModuleList(snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="zero",
                                   spike_grad=surrogate.atan(alpha=alpha)) for _ in weights)
    net = nn.ModuleDict({"fc": fcs, "lif": lifs})

    def run(x: Tensor) -> Tensor:
        return _python_loop(x, fcs, lifs, [lif.init_leaky() for lif in lifs])

    return net, run


def norse_lif_net(weights: Sequence[Tensor], *, tau: float = 2.0,
                  dt: float = 1e-3) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """Norse ``nn.Linear -> LIFBoxCell`` stack stepped in a Python loop.

    Norse integrates ``v += dt / tau (v_leak - v + i)``, i.e. the input is scaled by
    ``dt / tau``; the weights are multiplied by ``tau / dt`` so that the update is the same
    ``v = (1 - 1/tau) v + I`` as the others (forward). Norse has no arctan surrogate: its
    default SuperSpike (``method="super"``, alpha 100) is used.
    """
    from norse.torch import LIFBoxCell, LIFBoxParameters

    scale = tau  # tau in steps; dt / tau_s = 1 / tau
    p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / (tau * dt)),
                         v_th=torch.as_tensor(1.0), v_reset=torch.as_tensor(0.0))
    fcs = nn.ModuleList(_linear(w * scale) for w in weights)
    cells = nn.ModuleList(LIFBoxCell(p, dt=dt) for _ in weights)
    net = nn.ModuleDict({"fc": fcs, "lif": cells})

    def run(x: Tensor) -> Tensor:
        return _python_loop(x, fcs, cells, [None] * len(cells))

    return net, run
