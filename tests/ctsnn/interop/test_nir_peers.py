"""NIR round trips through snnTorch (a discrete-time library, forward Euler at dt = 1e-4 s).

snnTorch writes and reads NIR graphs assuming ``dt = 1e-4`` s, a spike being a one-step pulse
of height 1 (``beta = 1 - dt / tau``, ``r = tau / dt``): ``from_nir(..., euler_dt=1e-4)`` and
``to_nir(..., euler_dt=1e-4)`` speak that convention, and ctsnn's discrete engine at
``dt = 1e-4`` must then give the very same spikes. snnTorch and nirtorch are in the ``test``
extra (snnTorch 1.0 declares no dependencies), so CI runs these; skipped when snnTorch is
absent.
"""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn import LIF, Layer, Spikes
from ctsnn.interop import from_nir, to_nir

snn = pytest.importorskip("snntorch")
pytest.importorskip("nirtorch")
export_nir = pytest.importorskip("snntorch.export_nir")
import_nir = pytest.importorskip("snntorch.import_nir")
snn_utils = pytest.importorskip("snntorch.utils")

DT = 1e-4  # the step snnTorch's NIR converters assume


def _run_snntorch(net: torch.nn.Module, x: torch.Tensor, hidden: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Output spikes ``[T, B, N]`` of an ``init_hidden`` snnTorch Sequential (and those of the
    layer ``hidden``)."""
    snn_utils.reset(net)
    out, mid = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk, _ = net(x[t])
            out.append(spk)
            if hidden is not None:
                mid.append(net[hidden].spk.clone())
    return torch.stack(out), (torch.stack(mid) if hidden is not None else None)


def _input(n_in: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(150, 3, n_in, generator=g) < 0.3).float()


def test_snntorch_to_ctsnn_feed_forward_with_bias():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 4, bias=False),
        snn.Leaky(beta=torch.rand(4) * 0.3 + 0.6, threshold=torch.full((4,), 0.5),
                  init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(4, 3),  # with a bias: a per-step constant input
        snn.Leaky(beta=torch.full((3,), 0.8), threshold=torch.full((3,), 0.3),
                  init_hidden=True, reset_mechanism="zero", output=True))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    graph = export_nir.export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0])
    x = _input(5, seed=1)
    expect, _ = _run_snntorch(net, x)
    ours = from_nir(graph, euler_dt=DT)
    assert ours[1].synapse.bias is not None
    got = ctsnn.simulate(ours, Spikes.from_raster(x, dt=DT)).spikes.raster()
    assert expect.sum() > 20
    assert torch.equal(got, expect)
    with pytest.raises(ValueError, match="nonzero bias"):  # NIR's own (Dirac) reading
        from_nir(graph)


def test_snntorch_recurrent_layer_to_ctsnn():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 4, bias=False),
        snn.RLeaky(beta=torch.rand(4) * 0.3 + 0.6, threshold=torch.full((4,), 0.5),
                   linear_features=4, init_hidden=True, reset_mechanism="zero",
                   reset_delay=False),
        torch.nn.Linear(4, 3, bias=False),
        snn.Leaky(beta=torch.full((3,), 0.8), threshold=torch.full((3,), 0.3),
                  init_hidden=True, reset_mechanism="zero", output=True))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[1].recurrent.weight.mul_(2)
    graph = export_nir.export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0])
    x = _input(5, seed=2)
    expect, hidden = _run_snntorch(net, x, hidden=1)
    ours = from_nir(graph, euler_dt=DT)  # float64 (the nested graph's arrays)
    assert ours[0].recurrent is not None
    res = ctsnn.simulate(ours, Spikes.from_raster(x.double(), dt=DT))
    assert hidden.sum() > 20
    assert torch.equal(res.layers[0].spikes.raster().float(), hidden)
    assert torch.equal(res.spikes.raster().float(), expect)


def test_ctsnn_to_snntorch_matches_the_discrete_run():
    g = torch.Generator().manual_seed(2)
    net = [Layer(LIF(4, tau_mem=torch.rand(4, generator=g) * 1e-3 + 5e-4, v_threshold=0.5),
                 weight=torch.randn(4, 5, generator=g) * 1.5),
           Layer(LIF(3, tau_mem=8e-4, v_threshold=0.3), weight=torch.randn(3, 4, generator=g))]
    graph = to_nir(net, euler_dt=DT)
    peer = import_nir.import_from_nir(graph)
    x = _input(5, seed=3)
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = peer(x[t], state)
            out.append(o)
    expect = ctsnn.simulate(net, Spikes.from_raster(x, dt=DT)).spikes.raster()
    assert expect.sum() > 20
    assert torch.equal(torch.stack(out), expect)
