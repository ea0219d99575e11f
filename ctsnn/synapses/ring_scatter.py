"""DelRec's recurrent axonal delays as a compiled spike scatter into future ring slots (CPU).

The compiled counterpart of :mod:`ctsnn.synapses.ring` for
:class:`~ctsnn.synapses.RecurrentDense` with a ``Triangle`` kernel and per-axon delays
(``per="axon"``, DelRec's published setting), chosen by :meth:`RecurrentDense.start` when
:func:`ctsnn.compiled.kernels_enabled` says so (CPU, numba, switch on, float32/float64); the
``RingRead`` path stays the reference (CUDA, kernels off) and serves per-synapse delays, whose
transposed scatter (``B N² K`` scattered reads per step) measured slower than the reference's
BLAS products (docs/kernels-grid.md).

The triangle ``h(τ)`` of each axon is non-zero on at most ``K = ceil(2 s)`` consecutive
integer lags (two for ``σ = 0``), kept as *taps* ``lags, coefs [K, N]`` gathered from the
same dense spread the reference uses (so values and gradients, kinks included, are the
reference's). Per step ``m``:

* write: every spike ``S[m][b, j]`` is added, times each tap's coefficient, into the ring slot
  ``(m + lag) mod L``, ``ring [L, B, N]`` (cost spikes x K), so a slot holds the delayed
  presynaptic sum ``y[n] = Σ_τ h(τ) ⊙ S[n - τ]``;
* read: the slot of step ``n`` times ``Wᵀ`` (one ``[B, N] x [N, N]`` product) is the
  recurrent input; the slot is then cleared.

Backward is the transpose, in the same per-step graph the engine builds: each read stores its
output gradient ``G[n]`` and ``G[n] W`` (the gradient of ``y[n]``), each write gathers the
gradient of its spikes from the future reads it fed,
``dS[m][b, j] = Σ_k h[k, j] (G W)[m + lag][b, j]`` (dense: the surrogate gradient reaches every
entry), and accumulates the tap gradients over its spikes only; ``dL/dW = Σ_n G[n]ᵀ y[n]`` is
one product at the end. A chain of empty *token* tensors (write ``m`` -> write ``m + 1`` and
read ``m + 1``) makes autograd run every write's backward after all later reads' and the first
write's last; the first write returns the gradients of the taps and of the weight, which reach
``delay_steps``, ``p_spread`` and ``weight`` through PyTorch autograd as on the reference path.
Nothing per step is saved beyond references to the spike tensors the engine holds anyway and
the reads' ``y`` (``T B N``); backward keeps ``G`` and ``G W`` (``[T, B, N]`` each).

The kernels run on one thread (as :mod:`ctsnn.synapses.spike_scatter`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["ScatterRun", "spread_taps"]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _write_axon(ring, m, spikes, lags, h):
    """``ring[(m + lags[k, j]) % L, b, j] += S[b, j] h[k, j]`` for every spike (the delayed
    presynaptic sum; the weight is applied at the read)."""
    n_ring = ring.shape[0]
    n_batch, n_pre = spikes.shape
    n_taps = lags.shape[0]
    base = m % n_ring  # lags are in [1, L - 1]: one conditional wrap, no division per update
    for b in range(n_batch):
        for j in range(n_pre):
            v = spikes[b, j]
            if v == 0.0:
                continue
            for k in range(n_taps):
                slot = base + lags[k, j]
                if slot >= n_ring:
                    slot -= n_ring
                ring[slot, b, j] += h[k, j] * v


@numba.njit(cache=True, fastmath=True)
def _back_axon(m, spikes, first, h_t, gy, ds, gh_t):
    """Transpose of :func:`_write_axon` for the spikes of step ``m``; ``gy [B, N, T]`` is
    ``G W``, the gradient of the delayed presynaptic sums, time last, and an axon's taps are
    the consecutive lags ``first[j] + k`` (``h_t = hᵀ [N, K]``): each sum is a contiguous dot.

    ``ds[b, j] = Σ_k h[k, j] gy[b, j, m + first[j] + k]`` and, over the spikes,
    ``gh[k, j] += S[b, j] gy[b, j, m + first[j] + k]`` (``gh_t = ghᵀ``). Sums in the arrays'
    dtype; ``fastmath`` lets the short dots vectorise (measured 0.35 -> 0.27 ms per step at
    B = 64, N = 256, K = 23, float32).
    """
    n_batch, n_pre = spikes.shape
    n_taps = h_t.shape[1]
    n_reads = gy.shape[2]
    zero = np.zeros(1, dtype=ds.dtype)[0]
    for b in range(n_batch):
        for j in range(n_pre):
            t0 = m + first[j]
            n_k = min(n_taps, n_reads - t0)
            acc = zero
            for k in range(n_k):
                acc += h_t[j, k] * gy[b, j, t0 + k]
            ds[b, j] = acc
    for b in range(n_batch):
        for j in range(n_pre):
            v = spikes[b, j]
            if v != 0.0:
                t0 = m + first[j]
                for k in range(min(n_taps, n_reads - t0)):
                    gh_t[j, k] += v * gy[b, j, t0 + k]


# --------------------------------------------------------------------------- taps
def spread_taps(h: Tensor) -> tuple[Tensor, Tensor]:
    """The non-zero lags of a recurrent spread ``h [L, *S]`` (``h[0] = 0``), consecutive.

    ``K`` is the largest number of non-zero lags of one axon or synapse (at most ``ceil(2 s)``: the
    support ``(1 + d - s, 1 + d + s)`` is open; two for ``σ = 0``); a zero-valued lag has a zero
    derivative on the reference path too (``relu`` at 0), so leaving it out changes nothing.

    Args:
        h: the dense spread (:meth:`Triangle.spread`), differentiable.

    Returns:
        ``lags [K, *S]`` (int64, in ``[1, L - 1]``, ``lags[k] = lags[0] + k``) and
        ``coefs [K, *S]``, gathered from ``h`` (differentiable: the reference's values and
        gradients; a lag outside a support has coefficient 0).
    """
    n_lags = h.shape[0]
    # The support found on the values themselves (so it agrees with h exactly, ties included);
    # it is contiguous: each operation of the triangle's formula is monotone in τ.
    nonzero = (h.detach() != 0).to(torch.int8)
    n_taps = min(n_lags - 1, max(1, int(nonzero.sum(0).max()) if nonzero.numel() else 1))
    first = torch.argmax(nonzero, dim=0).clamp_min(1)  # all-zero columns: 1
    first = torch.minimum(first, torch.full_like(first, n_lags - n_taps))
    lags = first.unsqueeze(0) + torch.arange(n_taps, device=h.device).reshape(
        -1, *([1] * (h.ndim - 1)))
    coefs = torch.gather(h, 0, lags)
    return lags, coefs


# --------------------------------------------------------------------------- autograd
class _Write(torch.autograd.Function):
    """Step ``m``'s write: ``(spikes [B, N], token, run, m, *taps) -> token``."""

    @staticmethod
    def forward(ctx, spikes: Tensor, token: Tensor | None, run: ScatterRun,  # type: ignore[override]
                m: int, *taps: Tensor) -> Tensor:
        values = spikes.detach().contiguous()
        run.scatter(m, values)
        ctx.run, ctx.m, ctx.values = run, m, values
        return spikes.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token: Tensor):  # type: ignore[override]
        run: ScatterRun = ctx.run
        ds = run.transpose(ctx.m, ctx.values)
        need_spikes, need_token = ctx.needs_input_grad[:2]
        token_grad = grad_token.new_zeros(()) if need_token else None
        taps = run.finish(*ctx.needs_input_grad[4:]) if ctx.m == 0 else ()
        return (ds if need_spikes else None, token_grad, None, None, *taps)


def _one_thread_matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ b`` on one intra-op thread, for the small per-step products; the thread count
    is restored at once (the switch costs ~0.2 µs). Measured on 2 loaded cores,
    ``[64, 256] x [256, 256]`` float32, CPU per product: 0.044 ms on one thread against 0.06 ms
    on two with ``OMP_WAIT_POLICY=PASSIVE``, and 0.8-7 ms on two without it (the threads spin
    waiting for each other; ``import ctsnn`` sets PASSIVE only if OpenMP has not started)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.matmul(a, b, out=out)
    finally:
        torch.set_num_threads(threads)


class _Read(torch.autograd.Function):
    """Step ``n``'s read: ``(token, run, n) -> x [B, N]`` (the ring slot of step ``n`` times
    ``Wᵀ``)."""

    @staticmethod
    def forward(ctx, token: Tensor, run: ScatterRun, n: int) -> Tensor:  # type: ignore[override]
        ctx.run, ctx.n = run, n
        return run.take(n, record=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ctx.run.store_grad(ctx.n, grad)
        return grad.new_zeros(()), None, None


class ScatterRun:
    """Per-sequence working set of the scatter path (no autograd graph inside: the graph's
    nodes reference the run, never the other way round).

    Args:
        lags, coefs: taps ``[K, N]`` (:func:`spread_taps` of the axonal spread ``h [L, N]``);
            ``coefs`` differentiable.
        weight: the effective weight ``[N_post, N_pre]`` (differentiable).
        n_lags: ring length ``L``.
        batch_size: ``B``.
        mask: recurrent dropout mask ``[B, N]`` (applied by the caller) or ``None``.
    """

    def __init__(self, lags: Tensor, coefs: Tensor, weight: Tensor, n_lags: int,
                 batch_size: int, mask: Tensor | None = None) -> None:
        if lags.ndim != 2 or lags.shape != coefs.shape or weight.shape != (lags.shape[1],) * 2:
            raise ValueError(f"ScatterRun takes axonal taps [K, N] and a weight [N, N], got "
                             f"{list(lags.shape)}, {list(coefs.shape)}, {list(weight.shape)}")
        self.mask = mask
        self.inputs = (coefs, weight)
        self.weight = weight.detach().contiguous()
        self.weight_t = self.weight.t().contiguous()
        self.coefs_t = coefs.detach().t().contiguous().numpy()  # [N, K]
        self.first = lags[0].contiguous().numpy()  # taps are lags first + k (spread_taps)
        self.lags = lags.contiguous().numpy()
        self.coefs = coefs.detach().contiguous().numpy()
        n = coefs.shape[-1]
        self.ring = coefs.new_zeros((n_lags, batch_size, n)).detach()
        self.batch_size, self.n = batch_size, n
        self.step = 0  # next step to read
        self.n_reads = 0
        self._sums: list[tuple[int, Tensor]] = []  # the reads' y[n], for dL/dW = Σ G[n]ᵀ y[n]
        self._g: Tensor | None = None
        self._gy: Tensor | None = None
        self._acc: np.ndarray | None = None

    # ---------------------------------------------------------------- forward
    def read(self, n: int, token: Tensor | None) -> Tensor:
        """The recurrent input of step ``n`` ``[B, N]`` (differentiable through ``token``)."""
        self.n_reads = n + 1
        if token is None or not torch.is_grad_enabled():
            return self.take(n, record=False)
        return _Read.apply(token, self, n)

    def write(self, m: int, spikes: Tensor, token: Tensor | None) -> Tensor:
        """Scatter step ``m``'s spikes; returns the next token (the first write carries the
        taps, so their gradient arrives when every write's backward is done)."""
        self.step = m + 1
        if not torch.is_grad_enabled():
            self.scatter(m, spikes.detach().contiguous())
            return spikes.new_zeros(())
        taps = self.inputs if token is None else ()
        return _Write.apply(spikes, token, self, m, *taps)

    def take(self, n: int, *, record: bool) -> Tensor:
        """Ring slot of step ``n`` (cleared) times ``Wᵀ``; the slot's sum kept if ``record``."""
        slot = self.ring[n % self.ring.shape[0]]
        y = slot.clone()
        slot.zero_()
        if record:
            self._sums.append((n, y))
        return _one_thread_matmul(y, self.weight_t)

    def scatter(self, m: int, values: Tensor) -> None:
        _write_axon(self.ring.numpy(), m, values.to(self.ring.dtype).numpy(), self.lags,
                    self.coefs)

    # ---------------------------------------------------------------- backward
    def _buffers(self) -> None:
        if self._g is None:
            self._g = self.ring.new_zeros((self.n_reads, self.batch_size, self.n))
            self._gy = self.ring.new_zeros((self.batch_size, self.n, self.n_reads))
            self._acc = np.zeros_like(self.coefs_t)

    def store_grad(self, n: int, grad: Tensor) -> None:
        """A read's output gradient ``G[n]`` and ``G[n] W``, the gradient of the delayed
        presynaptic sum (kept time last, ``[B, N, T]``)."""
        self._buffers()
        g = grad.to(self.ring.dtype)
        self._g[n] = g
        self._gy[:, :, n] = _one_thread_matmul(g, self.weight)

    def transpose(self, m: int, values: Tensor) -> Tensor:
        """Gradient of step ``m``'s spikes ``[B, N]``; accumulates the taps' gradients."""
        self._buffers()
        ds = self.ring.new_empty((self.batch_size, self.n))
        _back_axon(m, values.to(self.ring.dtype).numpy(), self.first, self.coefs_t,
                   self._gy.numpy(), ds.numpy(), self._acc)
        return ds.to(values.dtype)

    def finish(self, need_taps: bool = True, need_weight: bool = True
               ) -> tuple[Tensor | None, Tensor | None]:
        """The gradients of the taps and of the weight (``Σ_n G[n]ᵀ y[n]``, one product), in
        the first write's backward (the last one), ``None`` where not needed; then the
        backward buffers are released."""
        self._buffers()
        grad_taps = torch.from_numpy(self._acc).t().contiguous() if need_taps else None
        if not need_weight:
            grad_weight = None
        elif self._sums:
            steps = torch.tensor([n for n, _ in self._sums], dtype=torch.int64)
            sums = torch.stack([y for _, y in self._sums]).reshape(-1, self.n)
            grad_weight = self._g[steps].reshape(-1, self.n).t() @ sums
        else:
            grad_weight = torch.zeros_like(self.weight)
        self._g = self._gy = self._acc = None
        return grad_taps, grad_weight
