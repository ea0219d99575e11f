"""Delayed feedback with :func:`solvers.dde.solve_dde`: Mackey-Glass, and learning a delay.

1. Mackey-Glass, ``x' = beta x(t - tau) / (1 + x(t - tau)^10) - gamma x``, integrated for
   four lags at once (one per batch element: per-element delays); with ``tau = 17`` it is
   the classic chaotic attractor.
2. A rate unit with delayed self-inhibition, ``tau_m r' = -r + sigmoid(gain (I - w r(t - d)))``,
   oscillates with a period set by ``d``. Starting from a wrong delay, gradient descent on
   ``d`` (autograd through the solver and the Hermite history) recovers the delay that
   produced a target trace. The loss covers the first 30 ms (onset of the inhibition); over
   longer windows the phase of the oscillation makes it non-convex in ``d``.

Prints a summary and writes ``delayed_feedback.png``.

Run: ``python examples/delayed_feedback.py [--out delayed_feedback.png] [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from solvers.dde import solve_dde  # noqa: E402

F64 = torch.float64


def mackey_glass(lags: list[float], *, t_end: float, dt: float):
    """Mackey-Glass for several lags in one batch (time in the model's own units)."""
    beta, gamma, power = 0.2, 0.1, 10

    def f(t, x, delayed):
        (x_tau,) = delayed
        return beta * x_tau / (1.0 + x_tau**power) - gamma * x

    tau = torch.tensor(lags, dtype=F64)
    return solve_dde(f, torch.full((len(lags),), 0.5, dtype=F64), (0.0, t_end), dt,
                     delays=tau), tau


def inhibited_unit(delay: torch.Tensor, *, t_end: float, dt: float):
    """Rate unit with delayed self-inhibition; seconds. ``delay`` may require gradients."""
    tau_m, gain, drive, w = 0.01, 8.0, 1.0, 2.0

    def f(t, r, delayed):
        (r_d,) = delayed
        return (-r + torch.sigmoid(gain * (drive - w * r_d))) / tau_m

    return solve_dde(f, torch.zeros(delay.shape, dtype=F64), (0.0, t_end), dt, delays=delay,
                     max_delay=0.05)


def fit_delay(*, d_true: float, d_start: float, steps: int, t_end: float, dt: float):
    """Plain gradient descent on the delay (seconds) to match a target trace."""
    target = inhibited_unit(torch.tensor(d_true, dtype=F64), t_end=t_end, dt=dt).y.detach()
    d = torch.tensor(d_start, dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([d], lr=5e-4)
    trace = [(float("nan"), d_start)]
    for _ in range(steps):
        opt.zero_grad()
        loss = ((inhibited_unit(d, t_end=t_end, dt=dt).y - target) ** 2).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep the delay in the solver's range, explicitly
            d.clamp_(0.0, 0.05)
        trace.append((loss.item(), d.item()))
    return d.detach(), trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="delayed_feedback.png")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args()
    start = time.perf_counter()

    lags = [4.0, 8.0, 17.0, 30.0]
    t_end, dt = (100.0, 0.5) if args.quick else (500.0, 0.5)
    sol, tau = mackey_glass(lags, t_end=t_end, dt=dt)
    late = sol.t > t_end / 2
    print(f"Mackey-Glass, t in [0, {t_end:g}], dt = {dt}, RK4 + cubic Hermite history")
    for i, lag in enumerate(lags):
        x = sol.y[late, i]
        print(f"  tau = {lag:4.0f}: x in [{x.min():.3f}, {x.max():.3f}], mean {x.mean():.3f}")

    d_true, d_start = 0.015, 0.008
    steps = 3 if args.quick else 12
    d_fit, trace = fit_delay(d_true=d_true, d_start=d_start, steps=steps, t_end=0.03, dt=0.001)
    print(f"Delayed self-inhibition: fit d from {d_start * 1e3:.1f} ms by gradient descent "
          f"({steps} steps): {d_fit * 1e3:.4f} ms (true {d_true * 1e3:.1f} ms), "
          f"loss {trace[1][0]:.1e} -> {trace[-1][0]:.1e}")

    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    for i, lag in enumerate(lags):
        ax[0, 0].plot(sol.t, sol.y[:, i], lw=0.8, label=f"tau = {lag:g}")
    ax[0, 0].set(xlabel="t", ylabel="x", title="Mackey-Glass (one batch, per-element lags)")
    ax[0, 0].legend(fontsize=8)
    k = lags.index(17.0)
    shift = int(round(17.0 / dt))
    ax[0, 1].plot(sol.y[shift:, k][late[shift:]], sol.y[:-shift, k][late[shift:]], lw=0.5)
    ax[0, 1].set(xlabel="x(t)", ylabel="x(t - 17)", title="tau = 17 attractor")
    target = inhibited_unit(torch.tensor(d_true, dtype=F64), t_end=0.15, dt=0.001)
    start_trace = inhibited_unit(torch.tensor(d_start, dtype=F64), t_end=0.15, dt=0.001).y
    t_ms = target.t * 1e3
    ax[1, 0].plot(t_ms, target.y, "k", lw=2, label=f"target, d = {d_true * 1e3:g} ms")
    ax[1, 0].plot(t_ms, start_trace, "--", label=f"start, d = {d_start * 1e3:g} ms")
    fitted = inhibited_unit(d_fit, t_end=0.15, dt=0.001).y
    ax[1, 0].plot(t_ms, fitted, label=f"fitted, d = {float(d_fit) * 1e3:.2f} ms")
    ax[1, 0].axvspan(0, 30, color="0.9", label="loss window")
    ax[1, 0].set(xlabel="t (ms)", ylabel="rate r", title="delayed self-inhibition")
    ax[1, 0].legend(fontsize=8)
    ax[1, 1].plot([1e3 * d for _, d in trace])
    ax[1, 1].axhline(d_true * 1e3, color="k", ls=":")
    ax[1, 1].set(xlabel="gradient step", ylabel="d (ms)", title="learning the delay")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
