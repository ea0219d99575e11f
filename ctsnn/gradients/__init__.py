"""Gradient methods, one module each, chosen per layer (``Layer(gradient=...)``).

* :class:`Autodiff` (:mod:`~ctsnn.gradients.autodiff`, shorthand ``"surrogate"``) —
  backpropagation through the simulation: surrogate spikes in discrete time, exact spike-time
  derivatives (implicit function theorem) in continuous time.
* :class:`Adjoint` (:mod:`~ctsnn.gradients.adjoint_method`, shorthand ``"adjoint"``) — exact
  event-based adjoint (EventProp) gradients. It runs

  - :mod:`~ctsnn.gradients.eventprop`: closed-form EventProp with delays for feed-forward
    LIF-family layers in continuous time (memory grows with spikes, not with T);
  - :mod:`~ctsnn.gradients.adjoint`: the generic adjoint for any model (vector-Jacobian
    products of its equations) and for recurrent layers;
  - :mod:`~ctsnn.gradients.discrete`: EventProp on the time grid (mlGeNN's discretisation).

A method is a :class:`GradientMethod` (:mod:`~ctsnn.gradients.base`): it says whether it
supports a layer (``check``) and runs it (``run``). Adding one = one new module + an entry in
:data:`SHORTHANDS` if it should have a string name.
"""

from __future__ import annotations

from .adjoint_method import Adjoint
from .autodiff import Autodiff
from .base import GradientMethod, LayerCall, LayerLike

#: String shorthands accepted by ``Layer(gradient=...)``.
SHORTHANDS: dict[str, type[GradientMethod]] = {"surrogate": Autodiff, "adjoint": Adjoint}


def as_gradient(gradient: str | GradientMethod) -> GradientMethod:
    """A :class:`GradientMethod` from a shorthand of :data:`SHORTHANDS` or an instance."""
    if isinstance(gradient, GradientMethod):
        return gradient
    if isinstance(gradient, str) and gradient in SHORTHANDS:
        return SHORTHANDS[gradient]()
    raise ValueError(f"unknown gradient {gradient!r}; expected one of {tuple(SHORTHANDS)} or a "
                     "ctsnn.gradients.GradientMethod object")


__all__ = ["Adjoint", "Autodiff", "GradientMethod", "LayerCall", "LayerLike", "SHORTHANDS",
           "as_gradient"]
