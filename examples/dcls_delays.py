"""Learning synaptic delays with the DCLS recipe on a task that needs them.

Task: two input channels each fire one spike; in class 0 channel 0 fires ``LAG`` steps before
channel 1, in class 1 the other way round (random onset). The neurons are almost memoryless
(tau = 1.005 steps, as in the DCLS SHD network) and the readout sums its softmax over time, so
without delays the network sees the same two isolated spikes in both classes, in a different
order that it cannot tell apart: chance level. Learned delays line the two spikes up at a
hidden neuron, which then fires for one order only.

Run: ``python examples/dcls_delays.py`` (about ten seconds on one CPU core).
"""

from __future__ import annotations

import torch

from ctsnn.losses import summed_softmax_cross_entropy, summed_softmax_prediction
from ctsnn.papers.dcls import DCLSConfig, DCLSNet, dcls_optimisers

LAG = 4          # steps between the two spikes
T = 16           # input steps
DT = 0.01        # seconds per step


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [T, n, 2]`` (one spike per channel) and labels ``[n]``."""
    y = torch.randint(0, 2, (n,), generator=generator)
    onset = torch.randint(0, T - LAG, (n,), generator=generator)
    x = torch.zeros(T, n, 2)
    b = torch.arange(n)
    first, second = y, 1 - y                   # class 0: channel 0 first
    x[onset, b, first] = 1.0
    x[onset + LAG, b, second] = 1.0
    return x, y


def accuracy(model: DCLSNet, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()                               # rounded one-tap delays, no dropout
    with torch.no_grad():
        return (summed_softmax_prediction(model(x)) == y).double().mean().item()


def make_config(learn_delay: bool, epochs: int) -> DCLSConfig:
    """The network: learned delays, or none at all (``delays="none"``: plain linear synapses,
    the same model in training and evaluation; the paper's other ablations are
    ``delays="fixed_random"`` and ``delays="constant_sigma"``)."""
    return DCLSConfig(n_in=2, n_hidden=16, n_layers=1, n_out=2, dt=DT, tau=0.01005,
                      max_delay=0.08, dropout=0.0, epochs=epochs,
                      delays="learned" if learn_delay else "none")


def train(learn_delay: bool, epochs: int, *, seed: int = 0, n_train: int = 256,
          verbose: bool = True) -> float:
    """Train one network; returns its test accuracy with rounded delays."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = make_config(learn_delay, epochs)
    model = DCLSNet(config, generator=g)
    x_train, y_train = make_data(n_train, g)
    x_test, y_test = make_data(256, g)
    before = accuracy(model, x_test, y_test)
    opt = dcls_optimisers(model, epochs, max_lr=2e-2, lr_delay=0.2)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n_train, generator=g).split(64):
            opt.zero_grad()
            summed_softmax_cross_entropy(model(x_train[:, idx]), y_train[idx]).backward()
            opt.step()        # Adam steps, then delays clamped to [0, K - 1]
        opt.end_epoch()       # one-cycle / cosine schedules, next Gaussian width
    after = accuracy(model, x_test, y_test)
    if not verbose:
        return after
    name = "learned delays" if learn_delay else "no delays     "
    print(f"{name}: test accuracy {before:6.1%} before -> {after:6.1%} after {epochs} epochs")
    if learn_delay:
        syn = model.blocks[0].layer.synapse.synapse
        steps = torch.round(syn.delay_steps.detach())
        print(f"  hidden delays (steps, rounded), channel 0 / channel 1, K = {syn.kernel_size}:")
        for i, (d0, d1) in enumerate(steps.tolist()):
            print(f"    neuron {i:2d}: {d0:2.0f} {d1:2.0f}   difference {d0 - d1:+.0f}")
        print(f"  a difference of {LAG:+d} (channel 0 delayed more) aligns the spikes of "
              f"class 0, {-LAG:+d} those of class 1")
    return after


if __name__ == "__main__":
    # Tiny tensors: one thread avoids thread wake-up costs that dominate at this size.
    torch.set_num_threads(1)
    train(learn_delay=False, epochs=3)
    train(learn_delay=True, epochs=30, n_train=384)
