"""How a layer's input reaches its population: currents, per-step jumps or exact arrivals."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..spikes import Spikes
from ..synapses import Arrivals, Dense


def drive(synapse: nn.Module | None, signal: Tensor | Spikes | None, *, time: str,
          as_current: bool, dt: float) -> dict[str, Any]:
    """Keyword arguments of :func:`~ctsnn.engine.run_population` for ``signal``.

    Args:
        synapse: the layer's input synapses, or ``None`` (one-to-one).
        signal: a tensor ``[T, B, N_in]`` (a current when ``as_current``, else per-step jumps
            added at the end of each step), :class:`Spikes` (discrete time: their raster through
            the synapse; continuous time: exact arrivals) or ``None``.

    Returns:
        ``current`` / ``jumps`` / ``arrivals``, and ``n_steps``, ``batch_size``, ``dtype``.
    """
    kw: dict[str, Any] = {}
    if isinstance(signal, Tensor):
        kw.update(n_steps=signal.shape[0], batch_size=signal.shape[1], dtype=signal.dtype)
        if as_current:
            if synapse is not None and not isinstance(getattr(synapse, "weight", None), Tensor):
                raise ValueError(f"a current input through {type(synapse).__name__} is not "
                                 "defined (it has no weight matrix); give spikes or "
                                 "input_as='jump'")
            kw["current"] = signal if synapse is None else signal @ synapse.weight.t()
        else:
            if isinstance(synapse, Dense):  # grid-kernel synapses refuse another dt
                synapse.check_input(signal, dt=dt)
            kw["jumps"] = signal if synapse is None else synapse.jumps(signal)
    elif isinstance(signal, Spikes):
        kw.update(n_steps=signal.n_steps, batch_size=signal.batch_size)
        weight = getattr(synapse, "weight", None)  # a buffer when not learnt
        kw["dtype"] = (signal.dtype if synapse is None else weight.dtype
                       if isinstance(weight, Tensor) else next(synapse.parameters()).dtype)
        if time == "continuous":
            if synapse is not None and not hasattr(synapse, "arrivals"):
                raise ValueError(f"{type(synapse).__name__} has no continuous-time arrivals: use "
                                 "time='discrete' or an exact synapse")
            kw["arrivals"] = (synapse.arrivals(signal) if synapse is not None
                              else Arrivals(signal, None))
        else:
            kw["jumps"] = synapse.jumps(signal) if synapse is not None else signal.raster()
    if kw.get("jumps") is not None:  # a synapse may extend the sequence (right padding)
        kw["n_steps"] = kw["jumps"].shape[0]
    return kw
