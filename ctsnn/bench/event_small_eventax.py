"""W7 ``event-small`` in eventax: run inside the eventax environment (numpy, JAX, eventax only).

Not imported by ctsnn: :mod:`ctsnn.bench.eventax_side` runs this file by path with the
interpreter of ``.venv-eventax`` (made by ``ctsnn/bench/eventax_env.sh``)::

    python event_small_eventax.py INPUTS.npz --task forward --strategy vmap --repeats 5 --warmup 2

It reads the inputs written by :func:`ctsnn.bench.event_small_inputs.save_npz`, builds eventax's
feed-forward network (``FFEvNN`` with its current-based ``LIF``: ``tau_mem dv/dt = -v + i``,
``tau_syn di/dt = -i``, input spikes add the weight to ``i``, reset by subtracting the
threshold; eventax's defaults: Euler, step 1 ms, Newton root finding) with the same weights and
per-synapse delays, and times

* ``forward``: every hidden spike of every sample in ``[0, duration]`` (``spikes_until_t``);
* ``train``: the gradient of the mean first-spike cross-entropy (logits ``-t_first / tau_ce``,
  a silent output counts as ``duration``) w.r.t. weights and delays (``ttfs``);

either as one ``jax.jit(jax.vmap(...))`` over the batch (``vmap``) or as a jitted per-sample
function called in a Python loop (``loop``). The first call (compilation included) is timed
apart (``first_call_s``); then ``warmup`` untimed and ``repeats`` timed calls (fewer when one call
would blow ``budget_s``). Prints one JSON line on stdout: timings (s), the spikes (forward) or the
loss and gradient norms (train).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def build(inp: dict[str, np.ndarray], train: bool, max_events: int):
    """The eventax network of W7 (hidden only, or hidden + outputs) with the given parameters."""
    import jax
    import jax.numpy as jnp
    from eventax.evnn import FFEvNN
    from eventax.neuron_models import LIF

    n_in, n_hid, n_out = (int(inp[k]) for k in ("n_in", "n_hidden", "n_out"))
    layers = [n_hid, n_out] if train else [n_hid]
    n = sum(layers)
    w = np.zeros((n + n_in, n), np.float32)  # [from, to]; inputs are rows n .. n + n_in
    d = np.zeros((n + n_in, n), np.float32)
    w[n:, :n_hid] = inp["w_in"].T
    d[n:, :n_hid] = inp["d_in"].T
    if train:
        w[:n_hid, n_hid:] = inp["w_out"].T
        d[:n_hid, n_hid:] = inp["d_out"].T
    # every input spike reaches every hidden neuron as its own event (per-synapse delays)
    n_arrivals = int(np.isfinite(inp["in_times"]).sum(axis=(1, 2)).max()) * n_hid
    return FFEvNN(
        layers=layers, in_size=n_in, neuron_model=LIF, key=jax.random.PRNGKey(0),
        max_solver_time=float(inp["duration"]), init_delays=jnp.asarray(d),
        init_weights=jnp.asarray(w), init_bias=0.0, thresh=float(inp["v_threshold"]),
        tmem=float(inp["tau_mem"]), tsyn=float(inp["tau_syn"]), vreset=float(inp["v_reset"]),
        solver_stepsize=1e-3, max_event_steps=n_arrivals + max_events,
        dtype=jnp.float32,
    )


def make_calls(inp: dict[str, np.ndarray], task: str, strategy: str, max_spikes: int):
    """``(call, finish)``: ``call()`` runs the whole batch once (blocking); ``finish(out)``
    turns its result into JSON-able data."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    train = task == "train"
    net = build(inp, train, max_events=3 * max_spikes)
    x = jnp.asarray(inp["in_times"], jnp.float32)  # [B, n_in, K]
    labels = jnp.asarray(inp["labels"])
    duration = float(inp["duration"])
    tau_ce = float(inp["tau_ce"])
    batch = x.shape[0]

    if not train:
        def one(xs):
            return net.spikes_until_t(xs, duration, max_spikes=max_spikes)

        if strategy == "vmap":
            f = jax.jit(jax.vmap(one))

            def call():
                return np.asarray(jax.block_until_ready(f(x)))
        else:
            f = jax.jit(one)

            def call():
                return np.stack([np.asarray(jax.block_until_ready(f(x[b])))
                                 for b in range(batch)])

        def finish(out):  # [B, n_hidden, max_spikes], inf padded
            b, j, k = np.nonzero(np.isfinite(out) & (out <= duration))
            full = np.isfinite(out).sum(axis=(1, 2)) >= max_spikes
            return {"times": out[b, j, k].astype(float).tolist(), "units": j.tolist(),
                    "batch": b.tolist(), "truncated": bool(full.any())}

        return call, finish

    def loss_one(model, xs, y):
        t = model.ttfs(xs)
        t = jnp.where(jnp.isfinite(t), t, duration)
        logits = -t / tau_ce
        return -jax.nn.log_softmax(logits)[y]

    if strategy == "vmap":
        @eqx.filter_jit
        def grad_all(model):
            def mean_loss(m):
                return jnp.mean(jax.vmap(lambda xs, y: loss_one(m, xs, y))(x, labels))
            return eqx.filter_value_and_grad(mean_loss)(model)

        def call():
            return jax.block_until_ready(grad_all(net))
    else:
        grad_one = eqx.filter_jit(eqx.filter_value_and_grad(loss_one))

        def call():
            total, grads = None, None
            for b in range(batch):
                v, g = jax.block_until_ready(grad_one(net, x[b], labels[b]))
                total = v if total is None else total + v
                grads = g if grads is None else jax.tree_util.tree_map(
                    lambda a, c: a + c, grads, g)
            return total / batch, jax.tree_util.tree_map(lambda a: a / batch, grads)

    def finish(out):
        value, grads = out
        return {"loss": float(value),
                "grad_weights_norm": float(jnp.linalg.norm(grads.neuron_model.weights)),
                "grad_delays_norm": float(jnp.linalg.norm(grads.delays))}

    return call, finish


def run(path: str, task: str, strategy: str, repeats: int, warmup: int,
        budget_s: float, max_spikes: int) -> dict:
    import jax

    inp = load(path)
    call, finish = make_calls(inp, task, strategy, max_spikes)
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        call()
    t0 = time.perf_counter()
    call()
    one = time.perf_counter() - t0
    n = max(1, min(repeats, int(budget_s // max(one, 1e-9))))
    walls = [one]
    cpu0 = time.process_time()
    for _ in range(n - 1):
        w0 = time.perf_counter()
        call()
        walls.append(time.perf_counter() - w0)
    cpu = time.process_time() - cpu0
    rest = sum(walls[1:])
    return {
        "task": task, "strategy": strategy, "batch": int(inp["batch"]),
        "first_call_s": first, "median_s": statistics.median(walls), "min_s": min(walls),
        "max_s": max(walls), "cpu_per_wall": cpu / rest if rest > 0 else None,
        "protocol": {"repeats": len(walls), "warmup": warmup, "reduced": len(walls) < repeats},
        "jax": jax.__version__, "result": finish(out),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs")
    p.add_argument("--task", choices=("forward", "train"), default="forward")
    p.add_argument("--strategy", choices=("vmap", "loop"), default="vmap")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=300.0)
    p.add_argument("--max-spikes", type=int, default=4000)
    a = p.parse_args()
    rec = run(a.inputs, a.task, a.strategy, a.repeats, a.warmup, a.budget_s, a.max_spikes)
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
