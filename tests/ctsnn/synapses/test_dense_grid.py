"""Dense with grid kernels (DCLS semantics; formerly DelayedLinear): delay semantics,
equivalences, gradients, training/eval state, errors.

SEEDS F0.1-F0.4 (shift, causality, rounding, cross-method equivalence) and F1.5, F1.8, F1.10,
F1.12. Float64 unless a test says otherwise; weights in the exactness tests are dyadic
(multiples of 1/16), so every summation order is exact and "equal" means bitwise equal.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense, Gaussian, Rounded, Taps, Triangle
from ctsnn.synapses.conv import TapConv, dense_conv, tap_conv
from ctsnn.synapses.kernels import gaussian_kernel
from ctsnn.synapses.spike_scatter import scatter_pays


@pytest.fixture(autouse=True)
def _float64_one_thread():
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # tiny tensors: thread wake-ups would dominate
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)


FAST = settings(max_examples=25, deadline=None)
DT = 0.01
KERNELS = ("gaussian", "triangle", "rounded")


def delayed_linear(n_in, n_out, *, kernel="gaussian", sigma=None, learn_delay=True,
                   **kw) -> Dense:
    """A grid-kernel Dense as the old DelayedLinear built it (learnable delays by default)."""
    kern = {"gaussian": Gaussian(sigma), "triangle": Triangle(), "rounded": Rounded()}[kernel]
    return Dense(n_in, n_out, kernel=kern, learn_delay=learn_delay, **kw)


def make(n_in=3, n_out=4, *, max_delay=0.24, kernel="triangle", seed=0, **kw) -> Dense:
    return delayed_linear(n_in, n_out, max_delay=max_delay, dt=DT, kernel=kernel,
                          generator=torch.Generator().manual_seed(seed), **kw)


def dyadic(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-24, 25, shape, generator=g) / 16).double()


def spikes(t, b, n, p=0.3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < p).double()


def shift_register(x: torch.Tensor, weight: torch.Tensor, steps: torch.Tensor,
                   pad_right: int = 0) -> torch.Tensor:
    """Naive reference: a per-synapse buffer of past inputs, read ``steps[i, j]`` back."""
    t_in, b, n_in = x.shape
    n_out = weight.shape[0]
    x = torch.cat([x, x.new_zeros(pad_right, b, n_in)])
    out = x.new_zeros(t_in + pad_right, b, n_out)
    for t in range(t_in + pad_right):
        for i in range(n_out):
            for j in range(n_in):
                s = int(steps[i, j])
                if t - s >= 0:
                    out[t, :, i] += weight[i, j] * x[t - s, :, j]
    return out


# --------------------------------------------------------------------------- F0.1 shift
@pytest.mark.parametrize("mode", ["eval", "triangle", "rounded"])
@pytest.mark.parametrize("delay", [0, 5, 24])
def test_single_spike_arrives_exactly_delay_steps_later(mode, delay):
    """F0.1: one spike at t0 -> exactly w at t0 + d, zero elsewhere (delay 0 and max too)."""
    m = make(1, 1, kernel="rounded" if mode == "eval" else mode, pad_right=24)
    m.set_weight(torch.tensor([[0.7]]))
    m.set_delay(delay * DT)
    m.train(mode != "eval")
    t0 = 3
    x = torch.zeros(10, 2, 1)
    x[t0, 1, 0] = 1.0
    out = m.jumps(x)
    expected = torch.zeros(34, 2, 1)
    expected[t0 + delay, 1, 0] = 0.7
    assert torch.equal(out, expected)


@pytest.mark.parametrize("kernel", KERNELS)
def test_spike_train_is_shifted_without_leakage_in_eval(kernel):
    m = make(1, 1, kernel=kernel, pad_right=12, delay_init=7.4 * DT)
    m.set_weight(torch.tensor([[0.5]]))
    m.eval()
    x = spikes(30, 3, 1, p=0.4)
    expected = torch.zeros(42, 3, 1)
    expected[7:37] = 0.5 * x                         # 7.4 steps rounds to 7
    assert torch.equal(m.jumps(x), expected)


def test_gaussian_small_sigma_is_a_shift():
    m = make(1, 1, kernel="gaussian", delay_init=6 * DT, sigma=0.05)
    x = spikes(20, 2, 1, p=0.5)
    expected = torch.zeros_like(x)
    expected[6:] = x[:-6] * m.weight.item()
    torch.testing.assert_close(m.jumps(x), expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- F0.2 causality
@FAST
@given(t0=st.integers(0, 18), kernel=st.sampled_from(KERNELS), train=st.booleans(),
       seed=st.integers(0, 1000))
def test_causality_future_inputs_do_not_change_the_past(t0, kernel, train, seed):
    m = make(4, 3, kernel=kernel, seed=seed)
    m.train(train)
    x = spikes(20, 2, 4, seed=seed)
    y = x.clone()
    y[t0 + 1:] = torch.rand(y[t0 + 1:].shape) * 3  # anything may happen after t0
    # One path at a time: sparse binary inputs take the spike scatter, others the dense
    # convolution, and the two round differently in the last bit.
    with use_kernels(False):
        a, b = m.jumps(x), m.jumps(y)
    assert torch.equal(a[: t0 + 1], b[: t0 + 1])
    z = x.clone()
    z[t0 + 1:] = (torch.rand(z[t0 + 1:].shape) < 0.1).to(z.dtype)  # other sparse spikes
    if scatter_pays(x) and scatter_pays(z):
        a, c = m.jumps(x), m.jumps(z)
        assert torch.equal(a[: t0 + 1], c[: t0 + 1])


# --------------------------------------------------------------------------- F0.3 rounding
def test_eval_rounds_to_nearest_and_honours_the_max():
    m = make(3, 1, kernel="gaussian", pad_right=24)
    m.set_weight(torch.tensor([[1.0, 2.0, 4.0]]))
    m.set_delay(torch.tensor([2.6, 2.4, 24.0]) * DT)       # max = K - 1 = 24
    m.eval()
    x = torch.zeros(1, 1, 3)
    x[0] = 1.0
    out = m.jumps(x)[:, 0, 0]
    assert out.nonzero().flatten().tolist() == [2, 3, 24]
    assert out[[2, 3, 24]].tolist() == [2.0, 1.0, 4.0]       # 2.6 -> 3 (not truncated to 2)
    assert out.shape == (25,)


def test_eval_ties_round_to_even_like_dense():
    m = make(2, 1, kernel="triangle")
    m.set_weight(torch.tensor([[1.0, 2.0]]))
    m.set_delay(torch.tensor([2.5, 3.5]) * DT)
    m.eval()
    x = torch.zeros(8, 1, 2)
    x[0] = 1.0
    assert m.jumps(x)[:, 0, 0].nonzero().flatten().tolist() == [2, 4]


# --------------------------------------------------------------------------- F0.4 equivalence
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_eval_equals_dense_and_shift_register(dtype):
    """F0.4: identical weights, integer delays -> exact equality with Dense and a naive buffer."""
    n_in, n_out = 5, 4
    w = dyadic((n_out, n_in))
    steps = torch.randint(0, 25, (n_out, n_in), generator=torch.Generator().manual_seed(3))
    steps[0, 0], steps[1, 1] = 0, 24
    m = make(n_in, n_out, kernel="gaussian", dtype=dtype)
    m.set_weight(w)
    jitter = torch.where(steps == 24, -0.3, 0.4)   # non-integer: eval rounds back to `steps`
    m.set_delay((steps + jitter) * DT)
    m.eval()
    x = spikes(40, 3, n_in, p=0.3).to(dtype)
    ours = m.jumps(x)
    dense = Dense(weight=w.to(dtype), delay=(steps * DT).to(dtype)).jumps(Spikes.from_raster(x, DT))
    ref = shift_register(x, w.to(dtype), steps)
    assert ours.dtype == dtype
    assert torch.equal(ours, ref)
    assert torch.equal(dense, ref)


def test_eval_layer_spikes_equal_dense_layer_spikes():
    """F0.4 through the neuron: the same LIF discretisation gives identical spike trains."""
    n_in, n_out = 6, 5
    w = dyadic((n_out, n_in), seed=1) + 0.5
    steps = torch.randint(0, 9, (n_out, n_in), generator=torch.Generator().manual_seed(4))
    m = delayed_linear(n_in, n_out, max_delay=0.08, dt=DT, kernel="triangle")
    m.set_weight(w)
    m.set_delay(steps * DT)
    m.eval()
    lif = dict(tau_mem=0.03, v_threshold=1.0)
    ours = ctsnn.Layer(ctsnn.LIF(n_out, **lif), m, method="euler")
    ref = ctsnn.Layer(ctsnn.LIF(n_out, **lif), w, delay=steps * DT, method="euler")
    x = spikes(50, 4, n_in, p=0.25)
    s_ours = ours(x, dt=DT, input_as="jump")[0].raster()
    s_ref = ctsnn.simulate(ref, Spikes.from_raster(x, DT), dt=DT, method="euler").spikes
    assert s_ours.sum() > 0
    assert torch.equal(s_ours, s_ref.raster(dtype=s_ours.dtype))


# --------------------------------------------------------------------------- sparse vs dense
@pytest.mark.parametrize("kernel", ["triangle", "rounded"])
@pytest.mark.parametrize("train", [True, False])
def test_tap_path_equals_dense_reference_values_and_gradients(kernel, train):
    m = make(5, 3, kernel=kernel, pad_right=4, bias=True, seed=2)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    m.train(train)
    x = spikes(17, 2, 5, seed=5).requires_grad_()
    g = torch.randn(21, 2, 3)
    out = m.jumps(x)
    params = [x, m.weight] + ([m.delay_steps] if train else [])
    grads = torch.autograd.grad((out * g).sum(), params)
    ref = dense_conv(x, m.kernel_tensor(), 4) + m.bias
    ref_grads = torch.autograd.grad((ref * g).sum(), params)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-13)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_tap_path_never_builds_a_dense_kernel(monkeypatch):
    """The 1-2 tap kernels run without the dense [out, in, K] kernel (memory O(out x in))."""
    import ctsnn.synapses.dense as lin
    import ctsnn.synapses.kernels as kernels

    def forbidden(*args, **kwargs):
        raise AssertionError("dense kernel built")

    monkeypatch.setattr(lin, "taps_to_dense", forbidden)
    monkeypatch.setattr(lin, "dense_conv", forbidden)
    monkeypatch.setattr(kernels, "gaussian_kernel", forbidden)
    monkeypatch.setattr(kernels, "taps_to_dense", forbidden)
    # K = 2001 taps; a dense kernel would be 2001 x larger than the weights.
    for kernel in ("triangle", "rounded"):
        m = delayed_linear(3, 2, max_delay=20.0, dt=DT, kernel=kernel)
        m.jumps(spikes(30, 2, 3)).sum().backward()
        assert m.delay_steps.grad is not None
    m = delayed_linear(3, 2, max_delay=20.0, dt=DT, kernel="gaussian").eval()
    m.jumps(spikes(30, 2, 3))


def testtap_conv_gradcheck():
    x = torch.rand(9, 2, 3, requires_grad=True)
    lags = torch.randint(0, 6, (2, 4, 3), generator=torch.Generator().manual_seed(0))
    lags[0, 0, 0] = 12                                     # beyond the input: no contribution
    coefs = torch.randn(2, 4, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: TapConv.apply(x, lags, c), (x, coefs))
    assert torch.autograd.gradcheck(lambda x, c: tap_conv(x, Taps(lags, c), 3), (x, coefs))


# --------------------------------------------------------------------------- F1.10 gradcheck
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck_weights_and_delays_through_kernel_and_convolution(kernel):
    """F1.10: gradcheck of a loss w.r.t. delays (positions) and weights with fixed spikes."""
    m = make(3, 2, kernel=kernel, sigma=1.3, pad_right=3, seed=1)
    x = spikes(12, 2, 3, p=0.4, seed=2)
    d0 = torch.tensor([[3.3, 0.6, 7.2], [11.7, 23.4, 5.5]])  # away from the triangle's kinks
    w0 = m.weight.detach().clone()
    target = torch.randn(15, 2, 2)

    def loss(w, d):
        out = torch.func.functional_call(m, {"weight": w, "delay_steps": d}, (x,))
        return ((out - target) ** 2).sum().unsqueeze(0)

    if kernel == "rounded":
        # Piecewise constant in d: gradcheck the weights; the delay gradient is the
        # straight-through (triangle) one, checked against the triangle kernel exactly.
        assert torch.autograd.gradcheck(lambda w: loss(w, d0), (w0.requires_grad_(),))
        tri = make(3, 2, kernel="triangle", pad_right=3)
        g = torch.randn(15, 2, 2)
        grads = []
        for module in (m, tri):
            d = d0.clone().requires_grad_()
            out = torch.func.functional_call(module, {"weight": w0, "delay_steps": d}, (x,))
            grads.append(torch.autograd.grad((out * g).sum(), d)[0])
        assert grads[0].abs().sum() > 0
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-13)
        return
    assert torch.autograd.gradcheck(loss, (w0.requires_grad_(), d0.requires_grad_()))
    # The same through DCLS positions P = (K - 1)/2 - d.
    p0 = (12 - d0).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: loss(w0.detach(), 12 - p), (p0,))


def test_gaussian_module_equals_kernel_formula():
    m = make(3, 2, kernel="gaussian", sigma=2.0, pad_right=5)
    x = spikes(15, 2, 3)
    kern = gaussian_kernel(m.delay_steps, 2.0, 25) * m.weight.unsqueeze(-1)
    ref = torch.zeros(20, 2, 2)
    xp = torch.cat([x, torch.zeros(5, 2, 3)])
    for t in range(20):
        for n in range(min(t + 1, 25)):
            ref[t] += xp[t - n] @ kern[:, :, n].t()
    torch.testing.assert_close(m.jumps(x), ref, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- F1.8 eval switch
def test_eval_leaves_training_state_untouched():
    m = make(4, 3, kernel="gaussian", sigma=3.0)
    x = spikes(20, 2, 4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train_out = m.jumps(x)
    m.eval()
    eval_out = m.jumps(x)
    assert torch.equal(m.kernel_tensor(), _one_hot(m))
    m.train()
    after = m.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(m.kernel, Gaussian) and m.sigma.item() == 3.0
    assert torch.equal(m.jumps(x), train_out)
    assert not torch.equal(eval_out, train_out)


def _one_hot(m: Dense) -> torch.Tensor:
    k = torch.zeros(m.n_out, m.n_in, m.kernel_size)
    k.scatter_(-1, torch.round(m.delay_steps.detach()).long().unsqueeze(-1),
               m.weight.detach().unsqueeze(-1))
    return k


def test_round_in_eval_false_keeps_training_kernel():
    m = make(2, 2, kernel="triangle", round_in_eval=False)
    x = spikes(10, 1, 2)
    out = m.jumps(x)
    m.eval()
    assert torch.equal(m.jumps(x), out)


def test_eval_still_trains_weights():
    m = make(2, 2, kernel="gaussian").eval()
    m.jumps(spikes(10, 1, 2)).sum().backward()
    assert m.weight.grad is not None and m.delay_steps.grad is None


# --------------------------------------------------------------------------- F1.5 clamp, init
def test_clamp_projects_delays_and_reapplies_the_mask():
    m = make(6, 4, fan_in=2)
    with torch.no_grad():
        m.delay_steps[0, 0] = -3.0
        m.delay_steps[1, 1] = 30.0
        m.weight.add_(1.0)                             # e.g. weight decay / an optimiser step
    m.clamp_delays_()
    assert m.delay_steps.min() >= 0 and m.delay_steps.max() <= 24
    assert m.delay_steps[0, 0] == 0 and m.delay_steps[1, 1] == 24
    assert bool((m.position.abs() <= 12).all())
    assert torch.equal(m.weight != 0, m.mask)
    with torch.no_grad():
        m.delay_steps[2, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        m.clamp_delays_()


def test_fixed_fan_in():
    m = make(20, 7, fan_in=10)
    assert m.mask.sum(1).tolist() == [10] * 7
    assert torch.equal(m.weight != 0, m.mask)
    m.jumps(spikes(12, 2, 20, p=0.5)).sum().backward()
    assert bool((m.weight.grad[~m.mask] == 0).all())
    assert m.n_parameters() == 2 * 140 and m.n_parameters(active_only=True) == 2 * 70


def test_initialisations():
    g = torch.Generator().manual_seed(0)
    m = delayed_linear(100, 200, max_delay=0.24, dt=DT, generator=g)
    d = m.delay_steps.detach()
    assert d.min() >= 0 and d.max() <= 24
    assert abs(d.mean().item() - 12) < 0.3 and abs(d.std().item() - 24 / 12 ** 0.5) < 0.2
    bound = (6 / 100) ** 0.5                            # Kaiming-uniform, ReLU gain
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound
    hn = delayed_linear(100, 200, max_delay=0.24, dt=DT, delay_init="half_normal",
                       delay_std=0.05, generator=g).delay_steps
    assert hn.min() >= 0 and hn.max() <= 24
    assert abs(hn.mean().item() - 5 * (2 / torch.pi) ** 0.5) < 0.2
    ref = delayed_linear(100, 200, max_delay=0.24, dt=DT, delay_init="dcls_reference",
                        generator=g).delay_steps
    # P ~ U(-13, 12) clamped to -12: about 1/25 of the delays start exactly at the maximum.
    assert abs((ref == 24).double().mean().item() - 1 / 25) < 0.01
    assert ref.min() >= 0 and ref.max() == 24
    const = make(2, 3, delay_init=0.05).delay_steps
    assert torch.equal(const, torch.full((3, 2), 5.0))
    axon = make(2, 3, delay_init=torch.tensor([0.03, 0.07])).delay_steps
    assert axon.tolist() == [[3.0, 7.0]] * 3           # snapped onto whole steps exactly
    assert torch.equal(make(2, 3, delay_init=0.03).delay, torch.full((3, 2), 3.0) * DT)


def test_parameters_buffers_and_units():
    m = make(3, 2, learn_delay=False, learn_weight=True)
    names = {n for n, _ in m.named_parameters()}
    assert names == {"weight"}
    assert "delay_steps" in dict(m.named_buffers()) and "sigma" in dict(m.named_buffers())
    assert m.n_parameters() == 12
    m2 = make(3, 2, learn_weight=False, bias=True)
    assert {n for n, _ in m2.named_parameters()} == {"delay_steps", "bias"}
    assert m2.kernel_size == 25 and m2.max_delay_steps == 24
    torch.testing.assert_close(m2.delay, m2.delay_steps * DT)
    torch.testing.assert_close(m2.position, 12 - m2.delay_steps)
    assert make(1, 1, kernel="gaussian").sigma.item() == 12.27  # DCLS start: K // 2 + 0.27
    assert "K=25" in repr(m2)


# --------------------------------------------------------------------------- F1.12 padding
def test_right_padding_output_length_and_late_spikes():
    m = make(2, 2, kernel="gaussian", pad_right="half", delay_init=0.24)
    assert m.pad_right == 12
    x = torch.zeros(10, 1, 2)
    x[-1] = 1.0
    out = m.jumps(x)
    assert out.shape == (22, 1, 2)
    assert m.output_steps(10) == 22
    m.eval()
    late = m.jumps(x)                    # a delay of 24 from the last step: beyond the padding
    assert torch.equal(late, torch.zeros_like(late))
    m.set_delay(0.12)
    assert torch.equal(m.jumps(x)[-1, 0], m.weight.sum(1).detach())


# --------------------------------------------------------------------------- inputs, layers
def test_spikes_input_equals_raster_input():
    m = make(3, 2, kernel="triangle")
    x = spikes(15, 2, 3)
    assert torch.equal(m.jumps(Spikes.from_raster(x, DT)), m.jumps(x))
    assert torch.equal(m(x), m.jumps(x))
    assert m.jumps(x.float()).dtype == torch.float64          # cast to the weight dtype


def test_as_layer_synapse_trains_delays():
    m = make(3, 4, kernel="gaussian", sigma=2.0)
    layer = ctsnn.Layer(ctsnn.LIF(4, tau_mem=0.02), m, method="euler",
                        surrogate=ctsnn.surrogate.atan(5.0))
    with torch.no_grad():
        m.weight.mul_(4)
    out = layer(spikes(20, 2, 3, p=0.5), dt=DT, input_as="jump")[0].raster()
    assert out.shape == (20, 2, 4) and out.sum() > 0
    out.sum().backward()
    assert m.delay_steps.grad.abs().sum() > 0


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(max_delay=0.255), "whole number of steps"),
    (dict(max_delay=-0.1), "non-negative"),
    (dict(kernel="box"), "unknown kernel"),
    (dict(delay_init=-0.01), "non-negative"),
    (dict(delay_init=float("nan")), "non-finite"),
    (dict(delay_init=0.25), "exceeds the longest representable delay"),
    (dict(delay_init=torch.zeros(2, 2)), "shape"),
    (dict(delay_init="normal"), "unknown delay_init"),
    (dict(delay_init="half_normal", delay_std=0.0), "positive"),
    (dict(fan_in=0), "fan_in"),
    (dict(fan_in=4), "fan_in"),
    (dict(pad_right=-1), "pad_right"),
    (dict(pad_right="full"), "pad_right"),
    (dict(sigma=0.0), "positive"),
    (dict(sigma=float("nan")), "finite"),
])
def test_constructor_errors(kwargs, match):
    args = dict(max_delay=0.24, dt=DT) | kwargs
    with pytest.raises(ValueError, match=match):
        if args.get("kernel") == "box":
            Dense(3, 2, **args)
        else:
            delayed_linear(3, 2, **args)


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match="positive int"):
        delayed_linear(0, 2, max_delay=0.1, dt=DT)
    with pytest.raises(TypeError, match="delay_init"):
        delayed_linear(3, 2, max_delay=0.1, dt=DT, delay_init=[0.1])
    m = make(3, 2)
    with pytest.raises(ValueError, match="3 dimensions"):
        m.jumps(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="expects n_in = 3"):
        m.jumps(torch.zeros(5, 1, 4))
    with pytest.raises(TypeError, match="floating"):
        m.jumps(torch.zeros(5, 1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="dt"):
        m.jumps(Spikes.from_raster(torch.zeros(5, 1, 3), 0.001))
    with pytest.raises(ValueError, match="shape"):
        m.set_weight(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-negative"):  # Triangle: sigma >= 0
        m.set_sigma(-1.0)
    with pytest.raises(ValueError, match="exceeds"):
        m.set_delay(torch.full((2, 3), 0.3))
