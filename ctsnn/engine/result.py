"""The result type of a simulation (one population, or every layer of a network)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..spikes import Spikes


class SimulationResult:
    """Output of one population (or of the last layer of a network).

    Attributes:
        spikes: emitted spikes (exact times in continuous mode, grid times in discrete mode). In
            discrete mode with a surrogate, ``spikes.raster()`` is the dense raster that carries
            the surrogate gradient; the event list is built on first access, so a training loop
            that only uses the raster pays nothing for it.
        states: recorded variables, name -> ``[T, B, N]`` (``[B, T, N]`` if ``batch_first``),
            value at the end of each step.
        saved: the recorded variables at the save times of ``saveat``, name -> ``[S, B, N]``
            (``[B, S, N]`` if ``batch_first``); empty without ``saveat`` (see
            :mod:`ctsnn.engine.saveat`).
        final_state: state at ``T dt`` (named tuple of ``[B, N]``), to continue a simulation.
        raster: discrete mode only: the spikes as a dense ``[T, B, N]`` tensor (the same tensor
            as ``spikes.raster()``).
        output: the readout ``[B, N]`` when one was asked for (the time integral of an
            integrand, a named readout, or first-spike times).
        layers: for a network, the result of every layer (this object is the last one).
    """

    def __init__(self, spikes: Spikes | Callable[[], Spikes], states: dict[str, Tensor],
                 final_state: tuple | None, raster: Tensor | None = None,
                 output: Tensor | None = None,
                 layers: list[SimulationResult] | None = None,
                 saved: dict[str, Tensor] | None = None) -> None:
        self._spikes = spikes
        self.states, self.final_state = states, final_state
        self.raster, self.output = raster, output
        self.layers = [] if layers is None else layers
        self.saved = {} if saved is None else saved

    @property
    def layers(self) -> list[SimulationResult]:
        """Every layer's result, input to output (a new list; the last entry may be this
        object)."""
        return [*self._layers, self] if self._self_last else list(self._layers)

    @layers.setter
    def layers(self, value: list[SimulationResult]) -> None:
        # This object is kept out of its own list: a list holding its owner is a reference
        # cycle, and a cycle keeps every layer's rasters and states alive until Python's cyclic
        # garbage collector happens to run (memory grew by a step's tensors per network call).
        value = list(value)
        self._self_last = bool(value) and value[-1] is self
        self._layers = value[:-1] if self._self_last else value

    @property
    def spikes(self) -> Spikes:
        if callable(self._spikes):
            self._spikes = self._spikes()
        return self._spikes

    @spikes.setter
    def spikes(self, value: Spikes) -> None:
        self._spikes = value

    def __repr__(self) -> str:
        return (f"SimulationResult(states={list(self.states)}, raster="
                f"{None if self.raster is None else list(self.raster.shape)}, "
                f"output={self.output is not None}, layers={len(self.layers)})")
