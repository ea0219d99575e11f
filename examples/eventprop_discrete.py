"""Discrete-time EventProp (mlGeNN's grid) against exact continuous EventProp.

A small feed-forward network, 3 inputs -> 4 CubaLIF (tau_m 20 ms, tau_s 5 ms) -> 2 CubaLI,
per-synapse delays, cross-entropy on the exp-weighted mean voltage (mlGeNN's
``avg_var_exp_weight``, ``readout="avg_exp"``). The same weights, delays and input spikes
(whole milliseconds) run through layers with ``gradient="adjoint"`` in ``time="discrete"``
(EventProp on the grid, :mod:`ctsnn.gradients.discrete`) on grids of 1, 0.1 and 0.01 ms and in
``time="continuous"`` (the exact closed-form EventProp, :mod:`ctsnn.gradients.eventprop`); the
discrete gradients dL/dW and dL/dd approach the exact ones about linearly in dt.

Run:  python examples/eventprop_discrete.py            (a few seconds)
      python examples/eventprop_discrete.py --quick    (1 and 0.1 ms only)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import ctsnn

T_END = 0.06  # s
MAX_DELAY = 0.01  # s
LABELS = torch.tensor([0, 1])


def problem(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple:
    """Input events (whole ms, batch 2) and parameters [w1, d1, w2, d2] (delays in s)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 30, (12,), generator=g).to(dtype) * 1e-3
    u = torch.randint(0, 3, (12,), generator=g)
    b = torch.randint(0, 2, (12,), generator=g)
    w1 = 1.0 + 2.0 * torch.rand(4, 3, generator=g, dtype=dtype)
    d1 = torch.randint(0, 8, (4, 3), generator=g).to(dtype) * 1e-3
    w2 = 0.5 + torch.rand(2, 4, generator=g, dtype=dtype)
    d2 = torch.randint(0, 8, (2, 4), generator=g).to(dtype) * 1e-3
    return (t, u, b), [w1, d1, w2, d2]


def spikes(events: tuple, dt: float) -> ctsnn.Spikes:
    t, u, b = events
    return ctsnn.Spikes(t, u, b, dt=dt, n_steps=round(T_END / dt), batch_size=2, n_units=3)


def models() -> tuple[ctsnn.CubaLIF, ctsnn.CubaLI]:
    return (ctsnn.CubaLIF(4, tau_mem=0.02, tau_syn=0.005),
            ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005))


def network(time_mode: str, weights: list[torch.Tensor]) -> list[ctsnn.Layer]:
    """Two layers with EventProp gradients (``gradient="adjoint"``) in ``time_mode``; in
    discrete time the ring buffers hold ``MAX_DELAY / dt`` steps."""
    w1, d1, w2, d2 = weights
    return [ctsnn.Layer(model, w, delay=d, learn_delay=True, max_delay=MAX_DELAY,
                        time=time_mode, gradient="adjoint")
            for model, w, d in zip(models(), (w1, w2), (d1, d2), strict=True)]


def gradients(net: list[ctsnn.Layer], x: ctsnn.Spikes) -> tuple[float, int, list[torch.Tensor]]:
    res = ctsnn.simulate(net, x, readout="avg_exp")
    loss = F.cross_entropy(res.output, LABELS)
    loss.backward()
    grads = [p.grad.clone() for layer in net
             for p in (layer.synapse.weight, layer.synapse.delay)]
    return loss.item(), len(res.layers[0].spikes), grads


def rel_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    da = torch.cat([x.flatten() for x in a])
    db = torch.cat([x.flatten() for x in b])
    return float((da - db).norm() / db.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only dt = 1 and 0.1 ms")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    events, weights = problem()

    loss_c, n_c, g_c = gradients(network("continuous", weights), spikes(events, 1e-3))
    print(f"continuous EventProp: loss {loss_c:.6f}, {n_c} hidden spikes")
    print(f"{'dt (ms)':>8} {'loss':>10} {'spikes':>7} {'rel. error dL/dW':>17} "
          f"{'rel. error dL/dd':>17} {'time (s)':>9}")
    for dt in (1e-3, 1e-4) if args.quick else (1e-3, 1e-4, 1e-5):
        t0 = time.perf_counter()
        loss_d, n_d, g_d = gradients(network("discrete", weights), spikes(events, dt))
        elapsed = time.perf_counter() - t0
        err_w = rel_error([g_d[0], g_d[2]], [g_c[0], g_c[2]])
        err_d = rel_error([g_d[1], g_d[3]], [g_c[1], g_c[3]])
        print(f"{dt * 1e3:8.2f} {loss_d:10.6f} {n_d:7d} {err_w:17.2e} {err_d:17.2e} "
              f"{elapsed:9.2f}")


if __name__ == "__main__":
    main()
