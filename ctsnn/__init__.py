"""ctsnn: spiking neural networks in continuous time with learnable delays."""

from .models import (
    LI,
    LIF,
    QIF,
    AdEx,
    AdLIF,
    CubaLIF,
    HodgkinHuxley,
    Izhikevich,
    NeuronModel,
)
from .models.equations import equations_model as equations_model
from .simulation import Layer, SimulationResult, run_population, simulate
from .spikes import Spikes
from .synapses import Arrivals, Dense

HH = HodgkinHuxley

__version__ = "0.1.0"

__all__ = [
    "Spikes", "NeuronModel", "LI", "LIF", "CubaLIF", "AdLIF", "AdEx", "QIF", "Izhikevich",
    "HodgkinHuxley", "HH", "Layer", "Dense", "Arrivals", "SimulationResult", "simulate",
    "run_population",
]
