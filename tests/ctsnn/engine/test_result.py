"""SimulationResult: a network's result lists every layer without a reference cycle."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import ctsnn
from ctsnn.engine import SimulationResult


def _network() -> list[ctsnn.Layer]:
    g = torch.Generator().manual_seed(0)
    return [ctsnn.Layer(ctsnn.LIF(5), ctsnn.synapses.Dense(3, 5, generator=g)),
            ctsnn.Layer(ctsnn.LIF(2), ctsnn.synapses.Dense(5, 2, generator=g))]


@pytest.mark.parametrize("grad", [False, True])
def test_network_result_is_freed_without_the_cycle_collector(grad):
    """Dropping a network's result frees it (and its layers' tensors) at once: nothing waits
    for Python's cyclic collector (it did: the result's layer list held the result)."""
    x = (torch.rand(20, 4, 3, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    net = _network()
    gc.collect()
    gc.disable()
    try:
        with torch.set_grad_enabled(grad):
            result = ctsnn.simulate(net, x, dt=1e-3, record=("v",))
        layers = result.layers
        assert len(layers) == 2 and layers[-1] is result
        refs = [weakref.ref(r) for r in layers]
        raster = weakref.ref(layers[0].raster)
        del result, layers
        assert all(r() is None for r in refs)
        assert raster() is None
    finally:
        gc.enable()


def test_layers_keep_what_was_set():
    a = SimulationResult(lambda: None, {}, None)
    b = SimulationResult(lambda: None, {}, None, layers=[a])
    assert b.layers == [a]  # a list not ending with the result itself is kept as given
    b.layers = [a, b]
    assert b.layers[0] is a and b.layers[1] is b
    assert SimulationResult(lambda: None, {}, None).layers == []
