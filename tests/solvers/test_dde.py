"""solve_dde: convergence order on y' = -y(t - 1) (exact by the method of steps), small lags,
per-element lags, gradients with respect to the delay, errors."""

from __future__ import annotations

import math
import runpy
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from solvers.dde import solve_dde

F64 = torch.float64


# -- exact solution of y' = -y(t - 1), y = 1 for t <= 0, by the method of steps ----------------
# On [k - 1, k] the solution is a polynomial P_k of degree k with rational coefficients:
# P_k(t) = P_{k-1}(k - 1) - int_{k-1}^t P_{k-1}(s - 1) ds, P_0 = 1.


def _eval(p: list[Fraction], x: Fraction) -> Fraction:
    out = Fraction(0)
    for c in reversed(p):
        out = out * x + c
    return out


def _shift(p: list[Fraction]) -> list[Fraction]:
    """Coefficients of p(t - 1)."""
    out = [Fraction(0)] * len(p)
    for i, c in enumerate(p):
        for j in range(i + 1):  # (t - 1)^i = sum_j C(i, j) t^j (-1)^(i - j)
            out[j] += c * math.comb(i, j) * (-1) ** (i - j)
    return out


def method_of_steps(n: int) -> list[list[Fraction]]:
    pieces = [[Fraction(1)]]
    for k in range(1, n + 1):
        q = _shift(pieces[-1])
        antider = [Fraction(0)] + [c / (i + 1) for i, c in enumerate(q)]
        start = _eval(pieces[-1], Fraction(k - 1))
        p = [-c for c in antider]
        p[0] += start + _eval(antider, Fraction(k - 1))
        pieces.append(p)
    return pieces


PIECES = method_of_steps(5)


def exact(x: Fraction) -> float:
    k = min(max(math.ceil(x), 0), len(PIECES) - 1)
    return float(_eval(PIECES[k], x))


def test_method_of_steps_solution():
    assert exact(Fraction(1, 2)) == 0.5  # 1 - t on [0, 1]
    assert exact(Fraction(1)) == 0.0
    assert exact(Fraction(2)) == -0.5  # -(2t - t^2/2 - 3/2) on [1, 2]
    # Continuity at the breaking points and the equation itself (by finite differences).
    for k in range(1, 5):
        assert _eval(PIECES[k], Fraction(k)) == _eval(PIECES[k + 1], Fraction(k))
    x, h = Fraction(37, 10), Fraction(1, 10**6)
    slope = (exact(x + h) - exact(x - h)) / float(2 * h)
    assert slope == pytest.approx(-exact(x - 1), abs=1e-8)


def error_on_grid(method: str, interp: str, steps_per_unit: int, t_end: int = 5) -> float:
    dt = 1.0 / steps_per_unit
    sol = solve_dde(lambda t, y, yd: -yd[0], torch.ones(1, dtype=F64), (0.0, float(t_end)), dt,
                    delays=1.0, method=method, interp=interp)
    assert sol.iterations == 1  # d >= dt: explicit steps
    ref = torch.tensor([exact(Fraction(n, steps_per_unit)) for n in range(len(sol.t))],
                       dtype=F64)
    return (sol.y[:, 0] - ref).abs().max().item()


# Observed orders (grid contains the breaking points t = 0, 1, 2, ...): RK4 with cubic Hermite
# keeps order 4; linear interpolation of the past limits every method to order 2.
CASES = [
    ("rk4", "hermite", 4),
    ("rk4", "linear", 2),
    ("heun", "hermite", 2),
    ("midpoint", "linear", 2),
    ("euler", "hermite", 1),
]


@pytest.mark.parametrize(("method", "interp", "order"), CASES)
def test_observed_order_on_known_solution(method, interp, order):
    e1, e2 = error_on_grid(method, interp, 10), error_on_grid(method, interp, 20)
    observed = math.log2(e1 / e2)
    assert abs(observed - order) < 0.15, observed
    if (method, interp) == ("rk4", "hermite"):
        assert e2 < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize(("method", "interp", "order"), CASES)
def test_observed_order_sweep(method, interp, order):
    errors = [error_on_grid(method, interp, m) for m in (10, 20, 40, 80)]
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert all(abs(o - order) < 0.1 for o in orders), orders


def test_zero_lag_is_the_ode_at_full_order():
    # d = 0 < dt reads the step being computed: dense output + fixed point; y' = -y.
    errors = []
    for dt in (0.1, 0.05):
        sol = solve_dde(lambda t, y, yd: -yd[0], torch.ones(1, dtype=F64), (0.0, 2.0), dt,
                        delays=0.0)
        assert sol.iterations > 1
        errors.append((sol.y[:, 0] - torch.exp(-sol.t)).abs().max().item())
    assert abs(math.log2(errors[0] / errors[1]) - 4) < 0.15, errors


def test_per_element_lags_match_separate_solves():
    # One batch, one lag per element (two below dt, one at it, two longer).
    delays = torch.tensor([0.0, 0.03, 0.1, 0.73, 1.0], dtype=F64)
    rhs = lambda t, y, yd: -yd[0] + 0.1 * torch.sin(3 * t)  # noqa: E731
    batch = solve_dde(rhs, torch.ones(5, dtype=F64), (0.0, 1.5), 0.1, delays=delays)
    for i, d in enumerate(delays.tolist()):
        one = solve_dde(rhs, torch.ones(1, dtype=F64), (0.0, 1.5), 0.1, delays=d)
        assert torch.allclose(batch.y[:, i], one.y[:, 0], rtol=0, atol=1e-13), d


def test_several_delays_and_per_connection_lags():
    # y_i' = -sum_j w_ij y_j(t - d_ij): per-connection lags against a [1, N] state view give the
    # same solution as one scalar delay per connection.
    w = torch.tensor([[0.5, 1.0], [-0.7, 0.2]], dtype=F64)
    d = torch.tensor([[0.3, 1.0], [0.55, 0.2]], dtype=F64)
    y0 = torch.tensor([1.0, -0.5], dtype=F64)

    def coupled(t, y, yd):
        return -(w * yd[0]).sum(-1, keepdim=True).transpose(0, 1)

    by_tensor = solve_dde(coupled, y0.view(1, 2), (0.0, 3.0), 0.05, delays=d)

    def by_list_rhs(t, y, yd):
        out = [-(sum(w[i, j] * yd[2 * i + j][j] for j in range(2))) for i in range(2)]
        return torch.stack(out)

    by_list = solve_dde(by_list_rhs, y0, (0.0, 3.0), 0.05, delays=[float(x) for x in d.flatten()])
    assert torch.allclose(by_tensor.y[:, 0, :], by_list.y, atol=1e-14)


def test_prehistory_function_and_initial_jump():
    # y' = -y(t - 1) with y = 1 + t before 0 but y(0) = 2 (a jump): on [0, 1],
    # y = 2 - int_0^t (1 + s - 1) ds = 2 - t^2 / 2, a quadratic, reproduced exactly by RK4
    # up to the step that ends at the breaking point t = 1 (its last stage reads x(0), the
    # stored right limit 2 rather than the left limit 1: documented first-order step).
    sol = solve_dde(lambda t, y, yd: -yd[0], lambda t: 1.0 + t, (0.0, 1.0), 0.1, delays=1.0,
                    y0=torch.full((1,), 2.0, dtype=F64))
    assert torch.allclose(sol.y[:-1, 0], 2.0 - sol.t[:-1] ** 2 / 2, atol=1e-14)
    assert torch.allclose(sol.dy[:-1, 0], -sol.t[:-1], atol=1e-14)
    # The default y0 = phi(t0) is continuous: exact through t = 1 and beyond.
    sol = solve_dde(lambda t, y, yd: -yd[0], lambda t: 1.0 + t, (0.0, 2.0), 0.1, delays=1.0,
                    y0=torch.ones(1, dtype=F64))
    on_01 = 1.0 - sol.t[:11] ** 2 / 2  # 1 - int_0^t s ds
    assert torch.allclose(sol.y[:11, 0], on_01, atol=1e-14)


def _y_end(delay, *, dt, t_end, interp="hermite"):
    sol = solve_dde(lambda t, y, yd: -yd[0], torch.ones(1, dtype=F64), (0.0, t_end), dt,
                    delays=delay, interp=interp)
    return sol.y[-1, 0]


@pytest.mark.parametrize(
    ("d0", "dt", "t_end", "interp"),
    [
        (0.73, 0.05, 3.0, "hermite"),  # explicit steps, off-grid lag
        (0.73, 0.05, 3.0, "linear"),
        (0.04, 0.1, 1.0, "hermite"),  # lag shorter than the step: fixed-point iteration
    ],
)
def test_gradient_wrt_delay_matches_finite_differences(d0, dt, t_end, interp):
    d = torch.tensor(d0, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(_y_end(d, dt=dt, t_end=t_end, interp=interp), d)
    eps = 1e-6
    fd = (_y_end(d0 + eps, dt=dt, t_end=t_end, interp=interp)
          - _y_end(d0 - eps, dt=dt, t_end=t_end, interp=interp)) / (2 * eps)
    assert grad.item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-9)
    assert abs(grad.item()) > 1e-3


def test_gradient_wrt_per_element_delays_and_parameters():
    # Off-grid lags: no stage reads exactly t0, where y' jumps (a kink in d).
    d = torch.tensor([0.31, 0.67], dtype=F64, requires_grad=True)
    a = torch.tensor(0.8, dtype=F64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0], dtype=F64)

    def loss(d, a):
        sol = solve_dde(lambda t, y, yd: -a * yd[0], torch.ones(2, dtype=F64), (0.0, 1.2), 0.1,
                        delays=d)
        return (weights * sol.y[-1]).sum()

    grad_d, grad_a = torch.autograd.grad(loss(d, a), (d, a))
    eps = 1e-6
    with torch.no_grad():
        for i in range(2):
            step = torch.zeros(2, dtype=F64)
            step[i] = eps
            fd = (loss(d + step, a) - loss(d - step, a)) / (2 * eps)
            assert grad_d[i].item() == pytest.approx(fd.item(), rel=1e-6)
        fd = (loss(d, a + eps) - loss(d, a - eps)) / (2 * eps)
        assert grad_a.item() == pytest.approx(fd.item(), rel=1e-6)


def test_nonconvergent_small_lag_iteration_warns():
    with pytest.warns(RuntimeWarning, match="max_iter=5"):
        solve_dde(lambda t, y, yd: -80.0 * yd[0], torch.ones(1, dtype=F64), (0.0, 0.5), 0.1,
                  delays=0.0, max_iter=5)


@pytest.mark.slow  # a few seconds, mostly matplotlib
def test_delayed_feedback_example_runs(tmp_path, monkeypatch, capsys):
    example = Path(__file__).resolve().parents[2] / "examples" / "delayed_feedback.py"
    out = tmp_path / "delayed_feedback.png"
    monkeypatch.setattr(sys, "argv", [example.name, "--quick", "--out", str(out)])
    runpy.run_path(str(example), run_name="__main__")
    assert out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Mackey-Glass" in printed and "true 15.0 ms" in printed


# -- errors name the parameter ------------------------------------------------------------------


def rhs(t, y, yd):
    return -yd[0]


Y1 = torch.ones(3, dtype=F64)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"delays": -0.5}, ValueError, r"delays\[0\] must be >= 0"),
        ({"delays": [0.5, math.nan]}, ValueError, r"delays\[1\] contains NaN"),
        ({"delays": torch.tensor([0.1, 2.0, 0.3]), "max_delay": 1.0}, ValueError,
         r"delays\[0\] exceeds max_delay=1.0"),
        ({"delays": torch.zeros(2)}, ValueError, r"delays\[0\] has shape \[2\]"),
        ({"delays": []}, ValueError, "delays must hold at least one"),
        ({"delays": math.inf}, ValueError, r"delays\[0\] must be finite"),
        ({"history": [1.0, 1.0, 1.0]}, TypeError, "history must be a tensor"),
        ({"delays": "1"}, TypeError, "delays must be"),
        ({"max_delay": 0.0}, ValueError, "max_delay must be positive"),
        ({"method": "rk45"}, ValueError, "unknown method 'rk45'"),
        ({"interp": "spline"}, ValueError, "unknown interp 'spline'"),
        ({"dt": 0.3}, ValueError, r"dt=0.3 s must divide"),
        ({"dt": -0.1}, ValueError, "dt must be positive"),
        ({"t_span": (1.0, 0.0)}, ValueError, "t_span must be finite with t1 > t0"),
        ({"t_span": (0.0,)}, TypeError, "t_span must be a pair"),
        ({"max_iter": 0}, ValueError, "max_iter must be a positive int"),
        ({"history": 1.0}, ValueError, "y0 is required"),
        ({"f": None}, TypeError, "f must be callable"),
        ({"f": lambda t, y, yd: -yd[0].sum()}, ValueError, r"f must return .*shape \[3\]"),
        ({"f": lambda t, y, yd: -yd[0].float()}, ValueError, "f must return .*float32"),
    ],
)
def test_errors(kwargs, exc, match):
    args = {"f": rhs, "history": Y1, "t_span": (0.0, 1.0), "dt": 0.1, "delays": 0.5, **kwargs}
    with pytest.raises(exc, match=match):
        solve_dde(args.pop("f"), args.pop("history"), args.pop("t_span"), args.pop("dt"), **args)


if __name__ == "__main__":  # print the convergence table quoted in docs/dde.md
    print("y' = -y(t - 1), y = 1 for t <= 0: max error on the grid of [0, 5] vs. method of steps")
    print(f"{'method':>9} {'interp':>8} " + " ".join(f"{'dt=1/' + str(m):>10}" for m in
                                                    (10, 20, 40, 80)) + "  observed orders")
    for method, interp, _ in CASES:
        errors = [error_on_grid(method, interp, m) for m in (10, 20, 40, 80)]
        orders = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
        print(f"{method:>9} {interp:>8} " + " ".join(f"{e:10.3e}" for e in errors) + "  "
              + " ".join(f"{o:.3f}" for o in orders))
    print("y' = -y(t - 0) (lag 0 < dt: dense output + fixed point) on [0, 2] vs. exp(-t)")
    for interp in ("hermite", "linear"):
        errors, iters = [], []
        for m in (10, 20, 40, 80):
            sol = solve_dde(lambda t, y, yd: -yd[0], torch.ones(1, dtype=F64), (0.0, 2.0), 1 / m,
                            delays=0.0, interp=interp)
            errors.append((sol.y[:, 0] - torch.exp(-sol.t)).abs().max().item())
            iters.append(f"{sol.mean_iterations:.1f}")
        orders = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
        print(f"{'rk4':>9} {interp:>8} " + " ".join(f"{e:10.3e}" for e in errors) + "  "
              + " ".join(f"{o:.3f}" for o in orders) + f"  (mean passes/step {', '.join(iters)})")
