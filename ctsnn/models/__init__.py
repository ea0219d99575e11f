"""Neuron models: the base class and the built-ins."""

from .adaptive import AdEx, AdLIF
from .base import NeuronModel
from .conductance import HodgkinHuxley
from .equations import equations_model as equations_model
from .lif import LI, LIF, CubaLI, CubaLIF
from .quadratic import QIF, Izhikevich

__all__ = ["NeuronModel", "LI", "LIF", "CubaLI", "CubaLIF", "AdLIF", "AdEx", "QIF", "Izhikevich",
           "HodgkinHuxley"]
