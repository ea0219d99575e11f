"""Feed-forward delays in a DelRec network (the paper's "rec + ff" and "ff delays" variants).

DelRec adds learnable feed-forward delays between hidden layers with the DCLS library's
version ``'v1'``: one tap per synapse placed by normalised linear interpolation between the two
grid steps around the delay (``relu(1 - |n - c|)``), no width schedule (SEEDS B1.6). Here that
is a :class:`~ctsnn.synapses.Dense` with the :class:`~ctsnn.synapses.Triangle` kernel at
``sigma = 0`` (rounded one-tap delays in ``eval()``), swapped in for a hidden layer's
``Linear`` synapse of a built :class:`~ctsnn.papers.delrec.DelRecNet`, keeping that synapse's
initial weights and bias, its dropout and BatchNorm. The DelRec recipe trains the new delays
with the other delays (:func:`~ctsnn.papers.delrec.delrec_optimisers` collects every learnable
delay) and clamps them to the window when the config clamps (SHD).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._checks import check_tensor
from ..papers.delrec import DelRecNet
from ..synapses import Dense, LinearSynapse, Triangle


class DelayedLinearSynapse(nn.Module):
    """``[input dropout →] Dense (learnable delays, linear interpolation) [→ BatchNorm]
    [→ output dropout]``, the delayed counterpart of :class:`~ctsnn.synapses.LinearSynapse`.

    ``jumps(x [T, B, n_in]) -> [T, B, n_out]`` (spikes arriving after the last step are
    dropped, as in a causal convolution without right padding).
    """

    def __init__(self, linear: LinearSynapse, *, max_delay: float, dt: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(linear, LinearSynapse):
            raise TypeError(f"expected a LinearSynapse, got {type(linear).__name__}")
        lin = linear.linear
        self.dense = Dense(weight=lin.weight.detach().clone(), kernel=Triangle(0.0),
                           max_delay=max_delay, dt=dt, learn_delay=True, delay_init="uniform",
                           bias=lin.bias is not None, generator=generator)
        if lin.bias is not None:
            with torch.no_grad():
                self.dense.bias.copy_(lin.bias)
        self.norm = linear.norm
        self.input_dropout, self.output_dropout = linear.input_dropout, linear.output_dropout

    @property
    def n_in(self) -> int:
        return self.dense.n_in

    @property
    def n_out(self) -> int:
        return self.dense.n_out

    @property
    def weight(self) -> Tensor:
        return self.dense.weight

    def jumps(self, x: Tensor) -> Tensor:
        """Summed delayed input per step ``[T, B, n_out]`` from ``[T, B, n_in]``."""
        check_tensor("x", x, ndim=3, floating=True)
        y = self.dense.jumps(self.input_dropout(x))
        if self.norm is not None:
            y = self.norm(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        return self.output_dropout(y)

    def forward(self, x: Tensor) -> Tensor:
        return self.jumps(x)


def add_feedforward_delays(net: DelRecNet, layers: Sequence[int], max_delay: float, *,
                           generator: torch.Generator | None = None) -> DelRecNet:
    """Give the input synapses of the hidden ``layers`` of ``net`` learnable delays in
    ``[0, max_delay]`` seconds (uniform initial delays on the grid ``net.config.dt``); in
    place, returns ``net``."""
    n = len(net.layers)
    for k in layers:
        if not isinstance(k, int) or not 0 <= k < n:
            raise ValueError(f"ff_delays: layer index {k!r} is not a hidden layer (0..{n - 1})")
        layer = net.layers[k]
        layer.synapse = DelayedLinearSynapse(layer.synapse, max_delay=max_delay,
                                             dt=net.config.dt, generator=generator)
    return net


__all__ = ["DelayedLinearSynapse", "add_feedforward_delays"]
