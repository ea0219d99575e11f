"""Neuron models from equation strings: :func:`ctsnn.from_equations`.

Differential equations written as text become a real :class:`~ctsnn.NeuronModel` subclass::

    model = ctsnn.from_equations(
        "dv/dt = (v_leak - v + r*I)/tau_mem",
        threshold="v >= v_th",
        reset="v = v_reset",
        parameters=dict(tau_mem=0.01, r=1.0, v_leak=0.0, v_th=1.0, v_reset=0.0),
        n=3,
    )

Grammar (one statement per line; ``#`` starts a comment):

* ``dX/dt = expr`` defines the state variable ``X`` (state variables are ordered by their
  first derivative line; one line per variable);
* ``name = expr`` defines a helper expression, substituted into the other lines (any order);
* expressions use state variables, parameters, helpers, the input current (``I``, or
  ``input_name``), time ``t`` (seconds), numbers, ``+ - * / **`` (or ``^``), the constant
  ``pi`` and the functions ``exp log sqrt sin cos tan tanh sinh cosh abs min max``
  (``Min``/``Max`` too).

Modules, one concept each:

* :mod:`.symbolic`: text -> sympy (restricted namespace, bounded size/depth/exponents, constants
  folded in float64, checks) and sympy -> torch;
* :mod:`.parsing`: the statements -> :class:`EquationSpec` (state variables, right-hand sides,
  threshold, reset, linearity);
* :mod:`.linear`: detecting ``dx/dt = A x + b`` and its exact flow (matrix exponential of the
  augmented system ``[[A, b], [0, 0]]``, a closed form for one variable; singular ``A`` too).
  Non-linear or time-dependent models have no flow and are integrated with Runge-Kutta;
* :mod:`.validation`: the numeric checks of an instance with its parameter values (no zero
  denominator at the initial state, a reset that lands below the threshold);
* :mod:`.model`: :class:`EquationModel` and :func:`from_equations`, which builds one subclass
  per call from the compiled expressions.
"""

from .model import EquationModel, from_equations
from .parsing import EquationSpec, parse_equations
from .symbolic import EquationError

__all__ = ["EquationError", "EquationModel", "EquationSpec", "from_equations", "parse_equations"]
