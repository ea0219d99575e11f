"""Learn time constants with exact EventProp gradients.

A teacher network (``CubaLIF`` hidden layer, ``CubaLI`` readout, ``avg_exp`` readout) with
``tau_mem = 10 ms``, ``tau_syn = 3 ms`` produces targets from random input spikes; a student with
the same weights and delays but ``tau_mem = 20 ms``, ``tau_syn = 6 ms`` learns only its time
constants (``learn_tau=True``) with ``gradient="adjoint"``: the closed-form EventProp gives
``dL/dtau_mem`` and ``dL/dtau_syn`` per neuron (``docs/eventprop-time-constants.md``).

Run: ``python examples/eventprop_time_constants.py [--steps 20]``.
"""

from __future__ import annotations

import argparse

import torch

import ctsnn

DT, STEPS, N_IN, N_HID, N_OUT, BATCH = 1e-3, 60, 10, 6, 2, 4


def network(tau_m: float, tau_s: float, learn: bool, g: torch.Generator) -> list[ctsnn.Layer]:
    """Two layers with fixed random weights/delays (same ``g`` seed -> same weights)."""
    w1 = 1.5 + 0.5 * torch.randn(N_HID, N_IN, generator=g, dtype=torch.float64)
    d1 = 0.01 * torch.rand(N_HID, N_IN, generator=g, dtype=torch.float64)
    w2 = torch.randn(N_OUT, N_HID, generator=g, dtype=torch.float64)
    tm, ts = (torch.tensor(x, dtype=torch.float64) for x in (tau_m, tau_s))  # float64 model
    hidden = ctsnn.CubaLIF(N_HID, tau_mem=tm, tau_syn=ts, learn_tau=learn)
    out = ctsnn.CubaLI(N_OUT, tau_mem=tm, tau_syn=ts, learn_tau=learn)
    return [ctsnn.Layer(hidden, w1, delay=d1, max_delay=0.01,
                        gradient="adjoint"),
            ctsnn.Layer(out, w2, gradient="adjoint")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    n_ev = 60
    spikes = ctsnn.Spikes(torch.rand(n_ev, generator=g, dtype=torch.float64) * 0.04,
                          torch.randint(0, N_IN, (n_ev,), generator=g),
                          torch.randint(0, BATCH, (n_ev,), generator=g),
                          dt=DT, n_steps=STEPS, batch_size=BATCH, n_units=N_IN)
    teacher = network(0.010, 0.003, False, torch.Generator().manual_seed(1))
    student = network(0.020, 0.006, True, torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = ctsnn.simulate(teacher, spikes, time="continuous", readout="avg_exp").output
    params = [p for layer in student for p in layer.model.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    for step in range(args.steps):
        z = ctsnn.simulate(student, spikes, time="continuous", readout="avg_exp").output
        loss = ((z - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep the time constants positive
            for p in params:
                p.clamp_(min=1e-4)
        if step % 5 == 0 or step == args.steps - 1:
            taus = [f"{x.mean().item() * 1e3:.2f}" for layer in student
                    for x in (layer.model.tau_mem, layer.model.tau_syn)]
            print(f"step {step:3d}  loss {loss.item():.3e}  mean tau_mem/tau_syn (ms): hidden "
                  f"{taus[0]}/{taus[1]}, readout {taus[2]}/{taus[3]}")


if __name__ == "__main__":
    main()
