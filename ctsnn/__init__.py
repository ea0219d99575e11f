"""ctsnn: spiking neural networks in continuous time with learnable delays."""

import os as _os

# Simulations run many small tensor operations per time step; with OpenMP's default
# spin-waiting, each one can stall for milliseconds when the cores are shared (measured:
# a 2x40x30 matmul took 1.8 ms instead of 26 us under load). Only effective if torch has
# not loaded OpenMP yet; an explicit user setting always wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import gradients, losses, surrogate
from .analysis import compare_time_modes
from .engine import SimulationResult, run_population
from .interop import from_nir, to_nir
from .models import (
    LI,
    LIF,
    QIF,
    AdEx,
    AdLIF,
    CubaLI,
    CubaLIF,
    HodgkinHuxley,
    Izhikevich,
    NeuronModel,
    from_equations,
)
from .network import Layer, clamp_delays_, delay_parameters, simulate, weight_parameters
from .spikes import Spikes
from .synapses import Arrivals, Dense

HH = HodgkinHuxley

__version__ = "0.1.0"

__all__ = [
    "Spikes", "NeuronModel", "LI", "LIF", "CubaLI", "CubaLIF", "AdLIF", "AdEx", "QIF", "Izhikevich",
    "HodgkinHuxley", "HH", "Layer", "Dense", "Arrivals", "SimulationResult", "simulate",
    "run_population", "from_equations", "clamp_delays_", "delay_parameters", "weight_parameters",
    "gradients", "losses", "surrogate", "to_nir", "from_nir", "compare_time_modes",
]
