"""The ring buffer behind recurrent synapses with spread delays (DelRec, discrete time).

:class:`RingRead` is one recurrent read ``x[b, i] = Σ_{τ=1..k} Σ_j W_ij h_ij(τ) S[n-τ][b, j]``
as a custom autograd function that saves no activations (only references to the spike
tensors the engine holds anyway); :class:`RingRun` is one sequence's working set. Used by
:class:`~ctsnn.synapses.RecurrentDense` with a spreading kernel (``Triangle``).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class RingRead(torch.autograd.Function):
    """One read ``x[b, i] = Σ_{τ=1..k} Σ_j W_ij h_ij(τ) S[n-τ][b, j]`` that saves no activations.

    Axonal: ``kernel = h [L, N]`` and ``weight = W``: ``x = (Σ_τ h[τ] ⊙ S[n-τ]) Wᵀ``.
    Synaptic: ``kernel = W ⊙ h [L, N_post, N_pre]`` and ``weight = None``:
    ``x = Σ_τ S[n-τ] kernel[τ]ᵀ``.

    The forward pass uses the run's ring buffer ``[B, L, N]`` of detached spikes and ``rotated``
    (the detached kernel permuted to the ring's slots; synaptic: transposed to
    ``[L, N_pre, N_post]``). Only *references* to ``kernel``, ``weight`` and the window tensors
    ``S[n-1], ..., S[n-k]`` (which the engine holds anyway) are saved; backward stacks the window
    again and recomputes the lag sum. Large temporaries go to workspaces reused by every step:
    per-step temporaries interleaved with the small tensors autograd keeps fragment glibc's heap
    (measured: +2.5 MB of resident memory per step with a fresh ``[B, L, N]`` product).
    """

    @staticmethod
    def forward(ctx, kernel: Tensor, weight: Tensor | None, rotated: Tensor, run: RingRun,
                *window: Tensor) -> Tensor:
        ring = run.ring
        b = ring.shape[0]
        if run.synaptic:
            out = ring.reshape(b, -1) @ rotated.reshape(-1, rotated.shape[-1])
        else:
            y = ring.new_empty(b, ring.shape[2])
            work = run.workspace("forward", ring.shape)
            torch.mul(ring, rotated, out=work)
            torch.sum(work, 1, out=y)
            out = y @ weight.t()
        ctx.run = run
        ctx.save_for_backward(kernel, weight, *window)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        kernel, weight, *window = ctx.saved_tensors
        run: RingRun = ctx.run
        # Drop the reference: the run's window holds spike tensors whose graph leads back to
        # this node, a cycle through the C++ graph that Python's collector cannot break (one
        # training step's working set leaked per step). A second backward through the same
        # graph (retain_graph=True) is therefore not supported.
        ctx.run = None
        if run is None:
            raise RuntimeError("RecurrentDense: backward through the same recurrent read twice "
                               "(retain_graph=True) is not supported; run the forward again")
        k = len(window)
        need_kernel, need_weight = ctx.needs_input_grad[:2]
        need_window = ctx.needs_input_grad[4:]
        grad_kernel = grad_weight = None
        grad_window: list[Tensor | None] = [None] * k
        taps = kernel[1:k + 1]
        if run.synaptic:
            grad_y = grad
        else:
            grad_y = grad @ weight  # gradient w.r.t. the lag sum y
        if need_kernel or need_weight:
            shape = (run.ring.shape[1], *window[0].shape)
            stack = run.workspace("stack", shape)[:k]
            torch.stack(window, out=stack)  # [k, B, N_pre]
            if need_weight:  # axonal only: recompute y = Σ_τ h[τ] S[n-τ]
                prod = run.workspace("product", shape)[:k]
                torch.mul(stack, taps[:, None, :], out=prod)
                grad_weight = grad.t() @ prod.sum(0)
            if need_kernel:
                grad_kernel = torch.zeros_like(kernel)
                if run.synaptic:
                    torch.matmul(grad.t(), stack, out=grad_kernel[1:k + 1])
                else:
                    stack.mul_(grad_y)
                    torch.sum(stack, 1, out=grad_kernel[1:k + 1])
        # One separate tensor per lag: views into one [k, B, N] block would keep the whole
        # block alive until the last of them is consumed (O(B N L²) pending gradients).
        for i, need in enumerate(need_window):
            if need:
                grad_window[i] = grad @ taps[i] if run.synaptic else grad_y * taps[i]
        return (grad_kernel, grad_weight, None, None, *grad_window)


class RingRun:
    """Per-sequence working set of a ring-buffer recurrence (never saved for backward).

    ``ring [B, L, N]`` holds the last ``L`` spike tensors (detached, slot ``n mod L``),
    ``window`` references to the last ``L - 1`` ones (most recent first) for backward.
    """

    __slots__ = ("kernel", "doubled", "ring", "window", "mask", "batch_size", "synaptic", "step",
                 "_work")

    def __init__(self, kernel: Tensor, doubled: Tensor, ring: Tensor, window: deque,
                 mask: Tensor | None, batch_size: int, synaptic: bool) -> None:
        self.kernel, self.doubled, self.ring, self.window = kernel, doubled, ring, window
        self.mask, self.batch_size, self.synaptic, self.step = mask, batch_size, synaptic, 0
        self._work: dict[str, Tensor] = {}

    def workspace(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """A scratch tensor reused across steps (allocated on first use)."""
        work = self._work.get(name)
        if work is None or tuple(work.shape) != tuple(shape):
            work = self.ring.new_empty(shape)
            self._work[name] = work
        return work


__all__ = ["RingRead", "RingRun"]
