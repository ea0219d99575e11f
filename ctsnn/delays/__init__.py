"""Learnable synaptic delays: delay kernels and delayed connections.

* :mod:`ctsnn.delays.kernels` — pure functions mapping real-valued delays (steps) to kernels
  over ``K`` lags: DCLS Gaussian, triangle (linear interpolation), rounded one-tap; rounding
  and the DCLS position convention.
* :mod:`ctsnn.delays.linear` — :class:`DelayedLinear`, a feed-forward synapse module with one
  learnable delay per synapse (usable as the synapse of a :class:`ctsnn.Layer`).
"""

from .kernels import (
    Taps,
    delay_to_position,
    gaussian_kernel,
    kernel_size,
    position_to_delay,
    round_delay,
    rounded_kernel,
    rounded_taps,
    taps_to_dense,
    triangle_kernel,
    triangle_taps,
)
from .linear import DelayedLinear

__all__ = [
    "DelayedLinear",
    "Taps", "kernel_size",
    "position_to_delay", "delay_to_position", "round_delay", "gaussian_kernel",
    "triangle_taps", "triangle_kernel", "rounded_taps", "rounded_kernel", "taps_to_dense",
]
