"""Neuron models: the base class, the built-ins and models from equation strings."""

from .adaptive import AdEx, AdLIF
from .base import NeuronModel
from .conductance import HodgkinHuxley
from .equations import EquationError, from_equations
from .lif import LI, LIF, RESET_MODES, CubaLI, CubaLIF
from .quadratic import QIF, Izhikevich

__all__ = ["NeuronModel", "LI", "LIF", "CubaLI", "CubaLIF", "AdLIF", "AdEx", "QIF", "Izhikevich",
           "HodgkinHuxley", "RESET_MODES", "from_equations", "EquationError"]
