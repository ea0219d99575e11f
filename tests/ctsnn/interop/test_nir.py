"""NIR import / export: exact round trips, the meaning of the exported graph, errors."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import ctsnn
from ctsnn import LI, LIF, CubaLI, CubaLIF, Dense, Layer, Spikes
from ctsnn.interop import IF, from_nir, to_nir
from ctsnn.interop.nir_paths import Paths, slices
from ctsnn.synapses import Gaussian, RecurrentDense


def _net(dtype: torch.dtype, seed: int = 0) -> list[Layer]:
    """Three layers covering the export paths: per-synapse delays (with repeated delays and a
    zero weight), a per-axon recurrent connection, per-axon delays, a readout."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)

    w0 = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 1.5).to(dtype)
    w0[0, 1] = 0.0
    d0 = torch.round(r(6, 5) * 4) * 1e-3 + 1e-3  # few distinct delays: shared channels
    d0[0, 1] = 0.0123  # a zero-weight synapse's own delay must survive too
    lif = LIF(6, tau_mem=r(6) * 0.02 + 0.01, r=r(6) + 0.5, v_leak=0.05, v_threshold=0.6,
              v_reset=-0.1, learn_tau=True)
    rec = RecurrentDense(weight=(torch.randn(6, 6, generator=g, dtype=torch.float64) * 0.3)
                         .to(dtype), delay=r(6) * 0.004 + 0.002, per="axon", learn_delay=True,
                         max_delay=0.01)
    l0 = Layer(lif, Dense(weight=w0, delay=d0, learn_delay=True, max_delay=0.02), recurrent=rec)
    l1 = Layer(CubaLIF(4, tau_mem=r(4) * 0.02 + 0.01, tau_syn=r(4) * 0.005 + 0.002,
                       r=r(4) + 0.5, v_threshold=0.3),
               Dense(weight=(torch.randn(4, 6, generator=g, dtype=torch.float64) * 4).to(dtype),
                     delay=r(6) * 0.003, per="axon"))
    l2 = Layer(LI(3, tau_mem=torch.full((3,), 0.02, dtype=dtype), r=2.0, v_leak=-0.1),
               weight=(torch.randn(3, 4, generator=g, dtype=torch.float64)).to(dtype))
    return [l0, l1, l2]


def _assert_same_network(a: list[Layer], b: nn.Sequential) -> None:
    assert len(a) == len(b)
    for la, lb in zip(a, b, strict=True):
        assert type(la.model) is type(lb.model)
        assert getattr(la.model, "reset_mode", None) == getattr(lb.model, "reset_mode", None)
        for part in ("model", "synapse", "recurrent"):
            ma, mb = getattr(la, part), getattr(lb, part)
            assert type(ma) is type(mb), part
            if ma is None:
                continue
            assert getattr(ma, "per", None) == getattr(mb, "per", None)
            assert getattr(ma, "max_delay", None) == getattr(mb, "max_delay", None)
            sa, sb = ma.state_dict(), mb.state_dict()
            assert sorted(sa) == sorted(sb), part
            for k in sa:
                assert sa[k].dtype == sb[k].dtype, (part, k)
                assert torch.equal(sa[k], sb[k]), (part, k, sa[k], sb[k])
            pa = sorted(n for n, _ in ma.named_parameters())
            assert pa == sorted(n for n, _ in mb.named_parameters()), part


def _input(dtype: torch.dtype, n_in: int = 5, seed: int = 3, steps: int = 300,
           batch: int = 2) -> Spikes:
    g = torch.Generator().manual_seed(seed)
    raster = (torch.rand(steps, batch, n_in, generator=g) < 0.08).to(dtype)
    return Spikes.from_raster(raster, dt=1e-4)


def _same_spikes(a: Spikes, b: Spikes) -> None:
    assert len(a) > 0
    for f in ("times", "units", "batch"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_through_a_file_is_exact(dtype, tmp_path):
    net = _net(dtype)
    path = tmp_path / "net.nir"
    graph = to_nir(net, path)
    assert isinstance(graph, nir.NIRGraph) and path.exists()
    assert graph.nodes["l0_neuron"].tau.dtype == np.dtype(str(dtype).split(".")[1])
    back = from_nir(path)
    _assert_same_network(net, back)
    _assert_same_network(net, from_nir(graph))  # in memory too


@pytest.mark.parametrize("time", ["discrete", "continuous"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_tripped_network_spikes_identically(dtype, time):
    net = _net(dtype)
    back = from_nir(to_nir(net))
    x = _input(dtype, steps=300 if time == "discrete" else 120, batch=2 if time == "discrete"
               else 1)
    ra = ctsnn.simulate(net[:2], x, time=time, record="v")
    rb = ctsnn.simulate(list(back)[:2], x, time=time, record="v")
    _same_spikes(ra.layers[0].spikes, rb.layers[0].spikes)
    _same_spikes(ra.spikes, rb.spikes)
    assert torch.equal(ra.states["v"], rb.states["v"])


def test_other_models_and_one_to_one_round_trip():
    net = [Layer(IF(3, r=torch.tensor([1.0, 2.0, 0.5]), v_threshold=0.7, v_reset=-0.2)),
           Layer(CubaLI(2, tau_mem=0.01, tau_syn=0.004, r=1.5, v_leak=0.1),
                 Dense(weight=torch.randn(2, 3)))]
    graph = to_nir(net)
    assert isinstance(graph.nodes["l0_neuron"], nir.IF)
    assert isinstance(graph.nodes["l1_neuron"], nir.CubaLI)
    assert ("l0_scale", "l0_neuron") in graph.edges  # one-to-one: only the jump scale
    back = from_nir(graph)
    assert back[0].synapse is None
    _assert_same_network(net, back)


def test_per_synapse_recurrent_and_learn_flags_round_trip():
    g = torch.Generator().manual_seed(5)
    rec = RecurrentDense(weight=torch.randn(4, 4, generator=g), per="synapse",
                         delay=torch.rand(4, 4, generator=g) * 0.01 + 0.001)
    net = [Layer(LIF(4, learn_threshold=True), Dense(weight=torch.randn(4, 2, generator=g),
                                                     learn_weight=False), recurrent=rec)]
    graph = to_nir(net)
    assert "l0_rec_delay_1" in graph.nodes
    back = from_nir(graph)
    _assert_same_network(net, back)
    assert isinstance(back[0].model.v_threshold, nn.Parameter)
    assert not isinstance(back[0].synapse.weight, nn.Parameter)


def test_expansion_nodes_and_sizes():
    net = _net(torch.float64)
    graph = to_nir(net)
    d = net[0].synapse.delay.detach().numpy()
    k = max(len(np.unique(d[:, j])) for j in range(d.shape[1]))
    assert k > 1
    for s in range(k):
        assert graph.nodes[f"l0_delay_{s}"].delay.shape == (5,)
        assert graph.nodes[f"l0_linear_{s}"].weight.shape == (6, 5)
        assert (f"l0_linear_{s}", "l0_scale") in graph.edges
    assert f"l0_linear_{k}" not in graph.nodes
    assert isinstance(graph.nodes["l1_delay"], nir.Delay)  # per axon: one Delay, one Linear
    assert np.array_equal(graph.nodes["l1_delay"].delay, net[1].synapse.delay.detach().numpy())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2 ** 31 - 1))
def test_expansion_composes_back_to_the_matrices(n_out, n_in, levels, seed):
    """Property: the branches Delay -> Linear sum to exactly W with delays D (nonzero W),
    with as many branches as the most distinct delays of one input."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.8)
    d = rng.integers(0, levels, size=(n_out, n_in)) * 1e-3 + rng.random() * 1e-4
    sl = slices(w, d)
    assert len(sl.delays) == max(len(np.unique(d[:, j])) for j in range(n_in))
    p = None
    for k in range(len(sl.delays)):
        branch = Paths.identity(n_in).delayed(sl.delays[k]).through(sl.weights[k])
        p = branch if p is None else p.plus(branch)
    w2, d2, reached = p.dense(n_in, "test")
    assert np.array_equal(w2, w)
    live = w != 0
    assert np.array_equal(d2[live], d[live]) and (reached == live).all()


def test_foreign_fan_out_expansion_is_read_too():
    """Another tool's expansion: fan-out Linear, Delay over the copies, summing Linear."""
    fan = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=fan), nir.Delay(delay=np.array([0.001, 0.003, 0.002])),
        nir.Linear(weight=np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 4.0]])),
        nir.LIF(tau=np.full(2, 0.01), r=np.full(2, 0.01), v_leak=np.zeros(2),
                v_threshold=np.ones(2), v_reset=np.zeros(2)))
    syn = from_nir(graph)[0].synapse
    assert syn.per == "synapse"
    assert torch.equal(syn.weight.detach(), torch.tensor([[1.0, 2.0], [3.0, 4.0]],
                                                         dtype=torch.float64))
    assert torch.equal(syn.delay, torch.tensor([[0.001, 0.002], [0.003, 0.002]],
                                               dtype=torch.float64))


def test_foreign_graph_reads_spikes_as_dirac_deltas():
    """No jump-scale node: a NIR weight w into LIF(tau, r) makes v jump by r w / tau, and v
    then decays with tau (closed form, float64)."""
    tau, r, w, t0 = 0.02, 3.0, 0.4, 2e-3
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[w]])),
        nir.LIF(tau=np.array([tau]), r=np.array([r]), v_leak=np.array([0.0]),
                v_threshold=np.array([1000.0]), v_reset=np.array([0.0])))
    net = from_nir(graph)
    assert net[0].model.tau_mem.dtype == torch.float64
    assert net[0].synapse.weight.item() == pytest.approx(r * w / tau, rel=1e-15)
    x = Spikes.from_events(torch.tensor([t0], dtype=torch.float64), torch.tensor([0]),
                           torch.tensor([0]), batch_size=1, n_units=1, dt=1e-3, n_steps=10)
    res = ctsnn.simulate(net, x, time="continuous", record="v",
                         saveat=torch.tensor([5e-3, 9e-3], dtype=torch.float64))
    expect = r * w / tau * np.exp(-(np.array([5e-3, 9e-3]) - t0) / tau)
    assert np.allclose(res.saved["v"][:, 0, 0].detach().numpy(), expect, rtol=1e-12)


def test_cuba_foreign_weight_uses_w_in_and_tau_syn():
    node = nir.CubaLIF(tau_syn=np.array([0.004, 0.005]), tau_mem=np.array([0.01, 0.02]),
                       r=np.array([1.0, 2.0]), v_leak=np.zeros(2), v_threshold=np.ones(2),
                       w_in=np.array([2.0, 0.5]))
    w = np.array([[1.0, -1.0], [0.5, 2.0]])
    net = from_nir(nir.NIRGraph.from_list(nir.Linear(weight=w), node))
    expect = (node.w_in / node.tau_syn)[:, None] * w
    assert np.allclose(net[0].synapse.weight.detach().numpy(), expect, rtol=1e-15)


def test_current_input_kind_round_trips_and_simulates_identically(tmp_path):
    g = torch.Generator().manual_seed(2)
    net = [Layer(LIF(3, tau_mem=0.01, r=2.0), weight=torch.rand(3, 4, generator=g)),
           Layer(LIF(2, tau_mem=0.02), weight=torch.rand(2, 3, generator=g) * 3)]
    graph = to_nir(net, tmp_path / "current.nir", input_kind="current")
    assert ("l0_linear", "l0_neuron") in graph.edges  # a current needs no jump scale
    back = from_nir(tmp_path / "current.nir")  # the input kind is recorded in the file
    _assert_same_network(net, back)
    x = torch.rand(200, 2, 4, generator=g) * 2
    a = ctsnn.simulate(net, x, dt=1e-4)
    b = ctsnn.simulate(list(back), x, dt=1e-4)
    assert len(a.spikes) > 0 and torch.equal(a.spikes.raster(), b.spikes.raster())


def test_lossy_export_records_what_nir_cannot_say(tmp_path):
    net = [Layer(LIF(3, reset="subtract", refractory=0.002), weight=torch.randn(3, 2))]
    with pytest.raises(ValueError, match=r"layer 0 \(LIF\).*refractory.*reset='subtract'"):
        to_nir(net)
    with pytest.warns(UserWarning, match="reset='subtract'"):
        to_nir(net, tmp_path / "lossy.nir", lossy=True)
    back = from_nir(tmp_path / "lossy.nir")
    assert back[0].model.reset_mode == "subtract"
    _assert_same_network(net, back)


def test_zero_weight_column_keeps_its_per_axon_delay_and_masks_need_lossy():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.0, -1.0]])
    net = [Layer(LIF(2), Dense(weight=w, delay=torch.tensor([1e-3, 7e-3, 2e-3]), per="axon"))]
    back = from_nir(to_nir(net))
    _assert_same_network(net, back)
    masked = [Layer(LIF(3), n_in=4, fan_in=2)]
    with pytest.raises(ValueError, match="layer 0 synapse: the fan-in mask"):
        to_nir(masked)
    with pytest.warns(UserWarning, match="fan-in mask"):
        back = from_nir(to_nir(masked, lossy=True))
    assert back[0].synapse.mask is None
    assert torch.equal(back[0].synapse.weight, masked[0].synapse.effective_weight.detach())


def test_without_expansion_per_synapse_delays_are_an_error_or_lossy_mean():
    d = torch.tensor([[0.001, 0.002], [0.003, 0.002]])
    net = [Layer(LIF(2), Dense(weight=torch.ones(2, 2), delay=d))]
    with pytest.raises(ValueError, match="layer 0 synapse.*one delay per channel"):
        to_nir(net, expand_delays=False)
    with pytest.warns(UserWarning, match="mean"):
        graph = to_nir(net, expand_delays=False, lossy=True)
    assert np.allclose(graph.nodes["l0_delay"].delay, [0.002, 0.002])
    # a per-synapse matrix with one delay per input needs no expansion and stays exact
    same = [Layer(LIF(2), Dense(weight=torch.ones(2, 2), delay=d[0].expand(2, 2).clone()))]
    _assert_same_network(same, from_nir(to_nir(same, expand_delays=False)))


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def test_unsupported_node_is_named():
    graph = _graph({"input": nir.Input(np.array([2])), "thr": nir.Threshold(np.ones(2)),
                    "output": nir.Output(np.array([2]))},
                   [("input", "thr"), ("thr", "output")])
    with pytest.raises(ValueError, match="'thr'.*unsupported node type Threshold"):
        from_nir(graph)


def test_inconsistent_shape_is_named():
    graph = _graph({"input": nir.Input(np.array([3])), "w": nir.Linear(np.ones((2, 4))),
                    "lif": _lif(2), "output": nir.Output(np.array([2]))},
                   [("input", "w"), ("w", "lif"), ("lif", "output")])
    with pytest.raises(ValueError, match=r"'w' \(Linear\): weight shape \[2, 4\]"):
        from_nir(graph)
    graph = _graph({"input": nir.Input(np.array([2])), "d": nir.Delay(np.ones(3)),
                    "lif": _lif(2), "output": nir.Output(np.array([2]))},
                   [("input", "d"), ("d", "lif"), ("lif", "output")])
    with pytest.raises(ValueError, match=r"'d' \(Delay\): 3 values for 2 channels"):
        from_nir(graph)


def test_two_delays_for_one_synapse_and_non_chains_are_errors():
    nodes = {"input": nir.Input(np.array([2])), "a": nir.Delay(np.array([0.001, 0.0])),
             "b": nir.Delay(np.array([0.002, 0.0])), "lif": _lif(2),
             "output": nir.Output(np.array([2]))}
    graph = _graph(nodes, [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"),
                           ("lif", "output")])
    with pytest.raises(ValueError, match="'lif'.*two delays"):
        from_nir(graph)
    skip = _graph({"input": nir.Input(np.array([2])), "l1": _lif(2), "l2": _lif(2),
                   "output": nir.Output(np.array([2]))},
                  [("input", "l1"), ("l1", "l2"), ("input", "l2"), ("l2", "output")])
    with pytest.raises(ValueError, match="'l2'.*chain"):
        from_nir(skip)
    bias = _graph({"input": nir.Input(np.array([2])),
                   "w": nir.Affine(np.eye(2), np.ones(2)), "lif": _lif(2),
                   "output": nir.Output(np.array([2]))},
                  [("input", "w"), ("w", "lif"), ("lif", "output")])
    with pytest.raises(ValueError, match="'w' \\(Affine\\): a nonzero bias"):
        from_nir(bias)


def test_export_errors_name_the_layer():
    with pytest.raises(ValueError, match="layer 0 \\(LI\\) does not spike"):
        to_nir([Layer(LI(2)), Layer(LIF(2), weight=torch.ones(2, 2))])
    with pytest.raises(ValueError, match="layer 1 .*NIR has no node for AdEx"):
        to_nir([Layer(LIF(2)), Layer(ctsnn.AdEx(2), weight=torch.ones(2, 2))])
    grid = Dense(2, 2, kernel=Gaussian(), max_delay=0.01, dt=1e-3)
    with pytest.raises(ValueError, match="layer 0 synapse.*exact"):
        to_nir([Layer(LIF(2), grid)])
    with pytest.raises(ValueError, match="input_kind='current'.*delays"):
        to_nir([Layer(LIF(2), Dense(weight=torch.ones(2, 2), delay=0.001))],
               input_kind="current")
    with pytest.raises(ValueError, match="input_kind"):
        to_nir([Layer(LIF(2))], input_kind="voltage")
    with pytest.raises(TypeError, match="item 1"):
        to_nir([Layer(LIF(2)), nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="CubaLIF.*euler_dt"):
        to_nir([Layer(CubaLIF(2))], euler_dt=1e-4)
    short = RecurrentDense(weight=torch.ones(2, 2), delay=3e-5)
    with pytest.raises(ValueError, match="layer 0 recurrent: a recurrent delay below one step"):
        to_nir([Layer(LIF(2), recurrent=short)], euler_dt=1e-4)
    with pytest.raises(ValueError, match="euler_dt exports for discrete-time consumers driven"):
        to_nir([Layer(LIF(2))], euler_dt=1e-4, input_kind="current")


def test_euler_reading_matches_forward_euler_closed_form():
    """euler_dt: v[n+1] = (1 - dt/tau) v[n] + dt r / tau * w x[n] (float64)."""
    dt, tau, r, w = 1e-4, 2e-3, 3.0, 0.7
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[w]])),
        nir.LIF(tau=np.array([tau]), r=np.array([r]), v_leak=np.array([0.0]),
                v_threshold=np.array([100.0]), v_reset=np.array([0.0])))
    net = from_nir(graph, euler_dt=dt)
    x = torch.zeros(30, 1, 1, dtype=torch.float64)
    x[[0, 4, 5, 17]] = 1.0
    res = ctsnn.simulate(net, Spikes.from_raster(x, dt=dt), record="v")
    v, expect = 0.0, []
    for n in range(30):
        v = (1 - dt / tau) * v + dt * r / tau * w * float(x[n])
        expect.append(v)
    assert np.allclose(res.states["v"][:, 0, 0].detach().numpy(), expect, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="euler_dt"):
        from_nir(graph, euler_dt=-1.0)


def test_euler_export_round_trip_reproduces_the_discrete_run(tmp_path):
    g = torch.Generator().manual_seed(4)
    dtype = torch.float64
    rec = RecurrentDense(weight=torch.randn(5, 5, generator=g, dtype=dtype) * 0.5,
                         delay=torch.tensor([1e-4, 2e-4, 3e-4, 1e-4, 5e-4], dtype=dtype),
                         per="axon")
    net = [Layer(LIF(5, tau_mem=torch.rand(5, generator=g, dtype=dtype) * 1e-3 + 5e-4,
                     v_threshold=0.5), Dense(weight=torch.randn(5, 4, generator=g, dtype=dtype)
                                             * 2, bias=True), recurrent=rec),
           Layer(LIF(3, tau_mem=torch.full((3,), 1e-3, dtype=dtype), v_threshold=0.4),
                 weight=torch.randn(3, 5, generator=g, dtype=dtype))]
    with torch.no_grad():
        net[0].synapse.bias.fill_(0.05)
    graph = to_nir(net, euler_dt=1e-4)
    assert not any(isinstance(n, nir.Scale) for n in graph.nodes.values())
    assert np.allclose(graph.nodes["l0_rec_delay"].delay, rec.delay.numpy() - 1e-4)
    nir.write(tmp_path / "euler.nir", graph)
    back = from_nir(tmp_path / "euler.nir")  # the recorded euler_dt is used
    x = _input(dtype, n_in=4)
    a, b = ctsnn.simulate(net, x, record="v"), ctsnn.simulate(list(back), x, record="v")
    assert len(a.spikes) > 10
    assert torch.equal(a.spikes.raster(), b.spikes.raster())
    assert torch.allclose(a.states["v"], b.states["v"], rtol=1e-9, atol=1e-12)


def test_nested_graphs_are_flattened():
    inner = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "lif": _lif(2),
                                "w": nir.Linear(np.eye(2) * 0.5),
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")],
                         type_check=False)
    graph = _graph({"input": nir.Input(np.array([3])), "w0": nir.Linear(np.ones((2, 3))),
                    "rec": inner, "output": nir.Output(np.array([2]))},
                   [("input", "w0"), ("w0", "rec"), ("rec", "output")])
    net = from_nir(graph)
    assert len(net) == 1 and isinstance(net[0].recurrent, RecurrentDense)
    assert np.allclose(net[0].recurrent.weight.detach().numpy(), np.eye(2) * 0.5 * 1 / 0.01)
    assert float(net[0].recurrent.delay.max()) == 0.0


def test_bad_arguments():
    with pytest.raises(TypeError, match="NIRGraph or a path"):
        from_nir(42)
    with pytest.raises(ValueError, match="dtype"):
        from_nir(to_nir([Layer(LIF(2))]), dtype=torch.float16)
    with pytest.raises(TypeError, match="lossy must be a bool"):
        to_nir([Layer(LIF(2))], lossy="yes")
    assert math.isfinite(float(to_nir([Layer(LIF(2))]).nodes["l0_scale"].scale[0]))


def test_current_input_factor_applies_to_the_input_only():
    """input_kind='current': the input's weights are currents (unchanged for LIF), the
    recurrent ones still spikes (times r / tau)."""
    tau, r = 0.01, 2.0
    lif = nir.LIF(tau=np.full(2, tau), r=np.full(2, r), v_leak=np.zeros(2),
                  v_threshold=np.ones(2), v_reset=np.zeros(2))
    w_in, w_rec = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), np.array([[0.0, 1.0], [2.0, 0.0]])
    graph = _graph({"input": nir.Input(np.array([3])), "w": nir.Linear(w_in), "lif": lif,
                    "d": nir.Delay(np.array([0.001, 0.002])), "rec": nir.Linear(w_rec),
                    "output": nir.Output(np.array([2]))},
                   [("input", "w"), ("w", "lif"), ("lif", "d"), ("d", "rec"), ("rec", "lif"),
                    ("lif", "output")])
    net = from_nir(graph, input_kind="current")
    assert np.allclose(net[0].synapse.weight.detach().numpy(), w_in, rtol=1e-15)
    assert np.allclose(net[0].recurrent.weight.detach().numpy(), w_rec * r / tau, rtol=1e-15)
    assert net[0].recurrent.per == "axon"
    spikes = from_nir(graph)  # the default: spikes everywhere
    assert np.allclose(spikes[0].synapse.weight.detach().numpy(), w_in * r / tau, rtol=1e-15)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_if_model_integrates_exactly(time):
    """IF: v = v0 + r I t; with r = 2, I = 5.3, v_threshold = 1: spikes every 1/10.6 s."""
    model = IF(1, r=torch.tensor([2.0], dtype=torch.float64), v_threshold=1.0, v_reset=0.0)
    x = torch.full((40, 1, 1), 5.3, dtype=torch.float64)
    res = ctsnn.simulate(model, x, dt=0.01, time=time)
    period = 1.0 / 10.6
    if time == "continuous":
        expect = period * torch.arange(1, 5, dtype=torch.float64)
        assert torch.allclose(res.spikes.times, expect, atol=1e-9)
    else:  # on the grid: v grows by 0.106 per step, resets to 0 after reaching 1
        assert res.spikes.raster()[:, 0, 0].nonzero().flatten().tolist() == [9, 19, 29, 39]


def _li(n: int) -> nir.LI:
    return nir.LI(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n))


def _cuba(n: int) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, 0.005), tau_mem=np.full(n, 0.01), r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.ones(n))


@pytest.mark.parametrize(("nodes", "edges", "kwargs", "match"), [
    ({"input": nir.Input(np.array([2])), "li": _li(2), "lif": _lif(2),
      "output": nir.Output(np.array([2]))},
     [("input", "li"), ("li", "lif"), ("lif", "output")], {}, "'li' \\(LI\\) does not spike"),
    ({"input": nir.Input(np.array([2])), "lif": _lif(2), "w": nir.Linear(np.eye(2)),
      "output": nir.Output(np.array([2]))},
     [("input", "lif"), ("lif", "w"), ("w", "output")], {}, "'output': the Output must be fed"),
    ({"input": nir.Input(np.array([2])), "in2": nir.Input(np.array([2])), "lif": _lif(2),
      "output": nir.Output(np.array([2]))},
     [("input", "lif"), ("in2", "lif"), ("lif", "output")], {}, "one Input and one Output"),
    ({"input": nir.Input(np.array([2])), "lif": _lif(2), "output": nir.Output(np.array([2]))},
     [("input", "lif"), ("lif", "nowhere")], {}, "'nowhere'"),
    ({"input": nir.Input(np.array([2])), "lif": _lif(2), "output": nir.Output(np.array([2]))},
     [("input", "lif"), ("lif", "output")], {"euler_dt": 0.05}, "'lif': tau = 0.01 s <= euler_dt"),
    ({"input": nir.Input(np.array([2])), "c": _cuba(2), "output": nir.Output(np.array([2]))},
     [("input", "c"), ("c", "output")], {"euler_dt": 1e-4}, "'c' \\(CubaLIF\\): euler_dt"),
    ({"input": nir.Input(np.array([2])), "w": nir.Linear(np.ones((2, 2))),
      "lif": nir.LIF(tau=np.zeros(2), r=np.ones(2), v_leak=np.zeros(2),
                     v_threshold=np.ones(2), v_reset=np.zeros(2)),
      "output": nir.Output(np.array([2]))},
     [("input", "w"), ("w", "lif"), ("lif", "output")], {}, "'lif' \\(LIF\\): .*positive"),
    ({"input": nir.Input(np.array([2])), "lif": nir.LIF(
        tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.zeros(2),
        v_reset=np.ones(2)), "output": nir.Output(np.array([2]))},
     [("input", "lif"), ("lif", "output")], {}, "'lif' \\(LIF\\): .*v_reset must be below"),
])
def test_import_errors_name_the_node(nodes, edges, kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_nir(_graph(nodes, edges), **kwargs)


def test_export_refuses_r_zero():
    with pytest.raises(ValueError, match="layer 0: r = 0"):
        to_nir([Layer(LIF(2, r=0.0), weight=torch.ones(2, 2))])


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from(["synapse", "axon", None]),
       st.sampled_from([torch.float32, torch.float64]), st.booleans(), st.integers(0, 10 ** 6))
def test_random_networks_round_trip_exactly(n_in, n, per, dtype, recurrent, seed):
    """Property: any supported layer survives ctsnn -> NIR -> ctsnn bit for bit."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n_in, generator=g, dtype=torch.float64).to(dtype)
    w[torch.rand(n, n_in, generator=g) < 0.3] = 0.0
    shape = (n, n_in) if per == "synapse" else (n_in,)
    delay = None if per is None else (
        torch.randint(0, 3, shape, generator=g) * 1e-3 +
        torch.rand(shape, generator=g, dtype=torch.float64) * 1e-4).to(dtype)
    syn = Dense(weight=w, delay=delay, per=per or "synapse")
    rec = None
    if recurrent:
        rec = RecurrentDense(weight=torch.randn(n, n, generator=g, dtype=torch.float64).to(dtype),
                             delay=(torch.rand(n, n, generator=g, dtype=torch.float64) * 1e-2)
                             .to(dtype))
    model = CubaLIF(n, tau_mem=(torch.rand(n, generator=g, dtype=torch.float64) * 0.02 + 0.005)
                    .to(dtype), v_threshold=0.5)
    net = [Layer(model, syn, recurrent=rec)]
    _assert_same_network(net, from_nir(to_nir(net)))


def _nir_reference_spikes(graph: nir.NIRGraph, events: list[tuple[float, int]], t_end: float
                          ) -> list[tuple[float, int]]:
    """An independent reading of a one-population graph by NIR's equations: input spikes are
    Dirac deltas pushed through the Delay / Linear / Scale nodes edge by edge; the LIF
    (``v_leak = 0``, no current) only decays between arrivals, so it can only cross its
    threshold at an arrival, where ``v`` jumps by ``r a / tau`` for an arriving area ``a``."""
    preds: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)

    def arrivals(name: str) -> list[tuple[float, int, float]]:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            return [(t, j, 1.0) for t, j in events]
        got = [a for p in preds[name] for a in arrivals(p)]
        if isinstance(node, nir.Delay):
            return [(t + float(node.delay[c]), c, a) for t, c, a in got]
        if isinstance(node, nir.Scale):
            return [(t, c, a * float(node.scale[c])) for t, c, a in got]
        if isinstance(node, nir.Linear):
            return [(t, i, a * float(node.weight[i, c])) for t, c, a in got
                    for i in range(node.weight.shape[0]) if node.weight[i, c] != 0]
        raise AssertionError(type(node).__name__)

    lif = graph.nodes["l0_neuron"]
    arr = sorted(a for p in preds["l0_neuron"] for a in arrivals(p))
    v = np.zeros(len(lif.tau))
    last = np.zeros(len(lif.tau))
    out = []
    for t, i, a in arr:
        if t >= t_end:
            break
        v[i] = v[i] * math.exp(-(t - last[i]) / lif.tau[i]) + lif.r[i] * a / lif.tau[i]
        last[i] = t
        if v[i] >= lif.v_threshold[i]:
            out.append((t, i))
            v[i] = lif.v_reset[i]
    return out


def test_exported_graph_means_the_same_under_nir_semantics():
    """ctsnn's continuous-time run equals an independent reading of the exported graph (Dirac
    spikes, jump-scale node, the per-synapse delay branches), spike for spike."""
    g = torch.Generator().manual_seed(7)
    dtype = torch.float64
    w = torch.rand(4, 3, generator=g, dtype=dtype) * 0.6
    d = torch.randint(0, 4, (4, 3), generator=g).to(dtype) * 1.7e-3
    net = [Layer(LIF(4, tau_mem=torch.rand(4, generator=g, dtype=dtype) * 0.01 + 0.005,
                     r=torch.rand(4, generator=g, dtype=dtype) + 0.5, v_threshold=1.0),
                 Dense(weight=w, delay=d))]
    graph = to_nir(net)
    assert any(name.startswith("l0_delay_") for name in graph.nodes)
    times = torch.rand(60, generator=g, dtype=dtype) * 0.09
    units = torch.randint(0, 3, (60,), generator=g)
    x = Spikes.from_events(times, units, batch_size=1, n_units=3, dt=1e-3, n_steps=100)
    res = ctsnn.simulate(net, x, time="continuous")
    ours = sorted(zip(res.spikes.times.tolist(), res.spikes.units.tolist(), strict=True))
    ref = _nir_reference_spikes(graph, list(zip(times.tolist(), units.tolist(), strict=True)),
                                0.1)
    assert len(ref) > 5
    assert [u for _, u in ours] == [u for _, u in ref]
    assert np.allclose([t for t, _ in ours], [t for t, _ in ref], atol=1e-12)


def test_grid_kernel_recipe_of_the_docs_gives_the_eval_input():
    """docs/nir.md: a grid-kernel synapse in eval() equals an exact one at the rounded delays."""
    torch.manual_seed(0)
    syn = Dense(5, 4, kernel=Gaussian(), max_delay=0.01, dt=1e-3).eval()
    exact = Dense(weight=syn.effective_weight.detach(),
                  delay=torch.round(syn.delay_steps.detach()) * syn.dt)
    x = Spikes.from_raster((torch.rand(50, 2, 5) < 0.2).float(), dt=1e-3)
    assert torch.allclose(syn.jumps(x), exact.jumps(x), atol=1e-6)
    back = from_nir(to_nir([Layer(LIF(4), exact)]))
    assert torch.equal(back[0].synapse.jumps(x), exact.jumps(x))
