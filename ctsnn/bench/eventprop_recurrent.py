"""Compiled recurrent EventProp backward against the reference backward, same run.

A reduced ``eventprop_shd_rec`` hidden layer (:class:`ctsnn.config.EventPropNet`'s recurrent
``CubaLIF`` with its initialisation: input weights ``N(0.03, 0.01)``, recurrent weights
``N(0, 0.02)``, input delays ``U(0, 150 ms)``, recurrent delays as the config, 0 by default),
Poisson input over ``t_max`` seconds at ``dt = 1 ms``. For both paths: the forward and the
backward of ``loss = sum(c * spike times)`` timed separately (median of ``repeats`` after one
warm-up; the warm-up also compiles the kernels), and the gradients compared.

* ``compiled``: :func:`ctsnn.gradients.eventprop.recurrent_layer_forward` (engine forward
  without state checkpoints, numba backward, :mod:`~ctsnn.gradients.eventprop.recurrent_kernels`);
* ``reference``: the generic adjoint (:func:`ctsnn.gradients.adjoint.adjoint_layer`, kernels off),
  what ``gradient="adjoint"`` ran for recurrent layers before.

Run: ``python -m ctsnn.bench.eventprop_recurrent [--hidden 64 --n-in 140 --batch 4
--t-max 0.5 --rate 8 --repeats 3]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.gradients.adjoint import adjoint_layer
from ctsnn.gradients.eventprop import recurrent_kernels, recurrent_layer_forward
from ctsnn.synapses import RecurrentDense


def _inputs(args: argparse.Namespace, gen: torch.Generator) -> dict:
    n_ev = int(args.rate * args.t_max * args.n_in * args.batch)
    f64 = torch.float64
    return dict(
        t=torch.rand(n_ev, generator=gen, dtype=f64) * args.t_max,
        u=torch.randint(0, args.n_in, (n_ev,), generator=gen),
        b=torch.randint(0, args.batch, (n_ev,), generator=gen),
        w=0.03 + 0.01 * torch.randn(args.hidden, args.n_in, generator=gen, dtype=f64),
        d=0.15 * torch.rand(args.hidden, args.n_in, generator=gen, dtype=f64),
        wr=0.02 * torch.randn(args.hidden, args.hidden, generator=gen, dtype=f64),
        dr=args.rec_delay * torch.rand(args.hidden, args.hidden, generator=gen, dtype=f64))


def _step(args: argparse.Namespace, p: dict, compiled: bool) -> tuple[float, float, list, int]:
    """One forward and backward: (forward s, backward s, gradients, spikes)."""
    model = ctsnn.CubaLIF(args.hidden, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0,
                          v_reset=0.0)
    t, w, d = (p[k].clone().requires_grad_() for k in ("t", "w", "d"))
    n_steps = int(round(args.t_max / args.dt))
    spikes = ctsnn.Spikes(t, p["u"], p["b"], dt=args.dt, n_steps=n_steps,
                          batch_size=args.batch, n_units=args.n_in)
    with use_kernels(compiled):
        t0 = time.perf_counter()
        if compiled:
            wr, dr = p["wr"].clone().requires_grad_(), p["dr"].clone().requires_grad_()
            out = recurrent_layer_forward(model, spikes, w, d, wr, dr)
        else:
            rec = RecurrentDense(weight=p["wr"], delay=p["dr"], learn_weight=True,
                                 learn_delay=True)
            out, *_ = adjoint_layer(model, spikes, w, d, recurrent=rec)
            wr, dr = rec.weight, rec.delay
        t1 = time.perf_counter()
        coef = torch.linspace(-1.0, 1.0, len(out), dtype=torch.float64)
        order = torch.argsort(out.times.detach() + 10 * (out.batch * args.hidden + out.units))
        grads = torch.autograd.grad((coef * out.times[order]).sum(), [t, w, d, wr, dr])
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, grads, len(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--n-in", type=int, default=140)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--t-max", type=float, default=0.5)
    ap.add_argument("--dt", type=float, default=1e-3)
    ap.add_argument("--rate", type=float, default=8.0, help="input spikes per channel per s")
    ap.add_argument("--rec-delay", type=float, default=0.0,
                    help="recurrent delays U(0, this) s (eventprop_shd_rec: 0)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = _inputs(args, torch.Generator().manual_seed(0))
    res: dict = {"config": vars(args)}
    grads = {}
    for name, compiled in (("compiled", True), ("reference", False)):
        fw, bw = [], []
        for r in range(args.repeats + 1):
            f, b, g, count = _step(args, p, compiled)
            if r:  # the first call warms up (and compiles)
                fw.append(f)
                bw.append(b)
            else:
                res[f"{name}_first_backward_s"] = b
        grads[name] = g
        res[name] = {"forward_s": statistics.median(fw), "backward_s": statistics.median(bw),
                     "spikes": count}
        if compiled:
            res[name]["refused"] = recurrent_kernels.last_refusal
    res["backward_speedup"] = res["reference"]["backward_s"] / res["compiled"]["backward_s"]
    res["max_rel_grad_diff"] = max(
        float((a - b).abs().max() / max(float(b.abs().max()), 1e-300))
        for a, b in zip(grads["compiled"], grads["reference"], strict=True))
    with open("/proc/loadavg") as f:
        res["loadavg"] = f.read().split()[:3]
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
