"""Sequence detection with learned delays and exact EventProp gradients (A1, SEEDS D5).

Two input neurons fire once each, 10 ms apart; class 0 is "input 0 then input 1", class 1 the
reverse. Two current-based leaky-integrator outputs (tau_m 10 ms, tau_s 5 ms) receive both
inputs through weights fixed at 1 and learnable delays; the readout is each output's maximum
voltage, the loss a cross-entropy on it. Only the delays learn (Adam, lr 1 ms, clamped to
[0, 15 ms]). From the worst initialisation (diagonal 0, off-diagonal 10 ms: each output
hears the *other* class's sequence in coincidence) the network must learn the diagonal 10 ms /
off-diagonal 0 solution. The paper reaches 100 % after seeing each example six times.

The same task runs in both time modes and with both gradient methods (``--time``,
``--gradient``; weights fixed, delays alone learn in every case):

* ``continuous`` + ``adjoint`` (default): exact spike arrivals, EventProp gradients, exact
  maximum;
* ``continuous`` + ``surrogate``: backpropagation through the exact event-driven simulation
  (exact arrival-time derivatives); the exact maximum has no autodiff path, so the readout is
  ``avg_exp`` (``(1/T) ∫ e^{-t/T} v dt``);
* ``discrete`` + ``adjoint``: mlGeNN's grid EventProp (delays rounded to whole steps forward,
  continuous-time delay gradient); its CubaLI readout is ``avg_exp``;
* ``discrete`` + ``surrogate``: backpropagation through the grid with a
  :class:`~ctsnn.synapses.kernels.Rounded` delay kernel (forward rounded to whole steps,
  straight-through interpolated gradient; delays stored in steps, so the learning rate is
  divided by ``dt``); readout the maximum over grid points.

``--readout`` overrides the readout where the combination supports it.

Run:  python examples/sequence_detection.py   (a few seconds; ``--flip`` flips the sign of the
delay gradient, which must not learn; ``--all`` runs the four combinations).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.data import sequence_detection
from ctsnn.synapses import Dense
from ctsnn.synapses.kernels import Rounded

DT = 1e-3  # s; the grid only sets the cost: spike arrivals and the maximum are exact
N_STEPS = 25  # 25 ms trials
MAX_DELAY = 0.015  # s


def example(label: int) -> ctsnn.Spikes:
    """One trial (batch 1): class 0 = input 0 at 0 ms then input 1 at 10 ms; class 1 reversed."""
    spikes, _ = sequence_detection([label], dt=DT, n_steps=N_STEPS)
    return spikes


#: (time, gradient) -> default readout: the exact maximum where the method has it.
READOUTS = {("continuous", "adjoint"): "max", ("continuous", "surrogate"): "avg_exp",
            ("discrete", "adjoint"): "avg_exp", ("discrete", "surrogate"): "max"}


def make_layer(*, dtype: torch.dtype = torch.float64, time: str = "continuous",
               gradient: str = "adjoint") -> ctsnn.Layer:
    """Weights 1 (fixed), delays at the worst initialisation: diagonal 0, off-diagonal 10 ms.

    ``time="discrete"`` with ``gradient="surrogate"`` stores the delays in grid steps (a
    :class:`Rounded` kernel: rounded forward, interpolated gradient); every other combination
    uses exact delays in seconds (rounded to whole steps by the discrete EventProp).
    """
    if (time, gradient) not in READOUTS:
        raise ValueError(f"time must be 'continuous' or 'discrete' and gradient 'adjoint' or "
                         f"'surrogate', got {time!r}, {gradient!r}")
    model = ctsnn.CubaLI(2, tau_mem=0.010, tau_syn=0.005).to(dtype)
    weight = torch.ones(2, 2, dtype=dtype)
    delay = torch.tensor([[0.0, 0.010], [0.010, 0.0]], dtype=dtype)
    grid = {"kernel": Rounded(), "dt": DT} if (time, gradient) == ("discrete", "surrogate") else {}
    synapse = Dense(weight=weight, delay=delay, learn_weight=False, learn_delay=True,
                    max_delay=MAX_DELAY, **grid)
    return ctsnn.Layer(model, synapse, time=time, gradient=gradient)


def readout_of(layer: ctsnn.Layer, label: int, readout: str = "max") -> torch.Tensor:
    """The readout ``[1, 2]`` of each output over trial ``label`` (``"max"``: the maximum
    voltage, exact in continuous time, over grid points in discrete time)."""
    return ctsnn.simulate(layer, example(label), readout=readout).output


def max_voltage(layer: ctsnn.Layer, label: int) -> torch.Tensor:
    """The exact maximum voltage of each output over the trial, ``[1, 2]``."""
    return readout_of(layer, label, "max")


def accuracy(layer: ctsnn.Layer, readout: str = "max") -> float:
    with torch.no_grad():
        right = [int(readout_of(layer, c, readout).argmax()) == c for c in (0, 1)]
    return sum(right) / 2


def train(*, sign: float = 1.0, max_epochs: int = 200, lr: float = 1e-3,
          verbose: bool = False, time: str = "continuous", gradient: str = "adjoint",
          readout: str | None = None) -> tuple[int | None, ctsnn.Layer]:
    """Train on the dataset [0, 1, 0, 1] (batch 1) until 100 % accuracy.

    Args:
        sign: multiplies the delay gradient (``-1`` = the flipped-sign bug of SEEDS C1.4).
        max_epochs: give up after this many epochs.
        lr: Adam learning rate of the delays in seconds (1e-3 = 1 ms, the paper's "1" step;
            divided by ``DT`` for delays stored in grid steps).
        verbose: print accuracy, mean loss and delays after every epoch.
        time, gradient: time mode and gradient method (see the module docstring).
        readout: ``"max"`` or ``"avg_exp"``; default :data:`READOUTS` of the combination.

    Returns:
        (presentations of each example until 100 %, or ``None`` if never; the layer).
    """
    layer = make_layer(time=time, gradient=gradient)
    readout = readout or READOUTS[(time, gradient)]
    (delay,) = ctsnn.delay_parameters(layer)  # seconds, or steps for the grid kernel
    step_lr = lr / DT if layer.synapse.kernel.grid else lr
    opt = torch.optim.Adam([delay], lr=step_lr)
    for epoch in range(1, max_epochs + 1):
        losses = []
        for label in (0, 1, 0, 1):
            opt.zero_grad()
            z = readout_of(layer, label, readout)  # [1, 2]
            loss = F.cross_entropy(z, torch.tensor([label]))
            loss.backward()
            losses.append(loss.item())
            delay.grad.mul_(sign)
            opt.step()
            ctsnn.clamp_delays_(layer)
        acc = accuracy(layer, readout)
        if verbose:
            d = (layer.synapse.delay.detach() * 1e3).tolist()
            print(f"epoch {epoch:3d}  accuracy {acc:4.0%}  loss {sum(losses) / 4:.4f}  delays "
                  f"(ms) [[{d[0][0]:5.2f}, {d[0][1]:5.2f}], [{d[1][0]:5.2f}, {d[1][1]:5.2f}]]")
        if acc == 1.0:
            return 2 * epoch, layer  # each epoch shows each example twice
    return None, layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flip", action="store_true", help="flip the delay-gradient sign")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--time", choices=("continuous", "discrete"), default="continuous")
    parser.add_argument("--gradient", choices=("adjoint", "surrogate"), default="adjoint")
    parser.add_argument("--readout", choices=("max", "avg_exp"), default=None)
    parser.add_argument("--all", action="store_true", help="run the four time/gradient "
                        "combinations (with their default readouts)")
    args = parser.parse_args()
    sign = -1.0 if args.flip else 1.0
    epochs = args.epochs or (20 if args.flip else 200)
    combos = list(READOUTS) if args.all else [(args.time, args.gradient)]
    for time, gradient in combos:
        readout = None if args.all else args.readout
        readout = readout or READOUTS[(time, gradient)]
        print(f"time={time} gradient={gradient} readout={readout}")
        shown, _ = train(sign=sign, max_epochs=epochs, verbose=True, time=time,
                         gradient=gradient, readout=readout)
        if shown is None:
            print(f"no 100 % within {epochs} epochs "
                  f"({'flipped' if args.flip else 'true'} gradient)")
        else:
            print(f"100 % after seeing each example {shown} times")


if __name__ == "__main__":
    main()
