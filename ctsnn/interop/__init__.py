"""Interoperability with other SNN tools (empty for now).

What will live here: export to and import from NIR (the Neuromorphic Intermediate
Representation) including delays, as ``ctsnn.to_nir(model)`` and ``ctsnn.from_nir(graph_or_path)``
(the names Norse and SpikingJelly use): neuron models map to NIR's LIF / CubaLIF / LI /
Integrator nodes with per-neuron parameter arrays and ``tau`` in seconds, synapses to
``Affine`` / ``Linear`` (and ``Delay``) nodes, spike data to NIR ``EventData``-style padded
``(times, units)`` arrays (:meth:`ctsnn.Spikes.to_padded`); converters from Tonic's structured
event arrays (``t`` in microseconds) belong here too.
"""

__all__: list[str] = []
