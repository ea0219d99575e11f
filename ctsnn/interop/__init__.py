"""Interoperability with other SNN tools: NIR (the Neuromorphic Intermediate Representation).

* :func:`to_nir` — a network (what :func:`ctsnn.simulate` takes) as a ``nir.NIRGraph``
  (optionally written to a ``.nir`` file), delays included: per-axon delays as NIR ``Delay``
  nodes, per-synapse delay matrices through a lossless expansion
  (:mod:`ctsnn.interop.nir_paths`).
* :func:`from_nir` — a ``nir.NIRGraph`` or ``.nir`` file as an ``nn.Sequential`` of
  :class:`~ctsnn.Layer`; ``euler_dt=`` reads graphs exported by discrete-time libraries the way
  they run them.
* :class:`IF` — the integrate-and-fire neuron of NIR's ``IF`` node.

Conventions (weights as jumps, the jump-scale node, seconds): ``docs/nir.md`` and
:mod:`ctsnn.interop.nir_models`.
"""

from .nir_export import to_nir
from .nir_import import from_nir
from .nir_models import IF

__all__ = ["to_nir", "from_nir", "IF"]
