"""count_parameters (the papers' way of counting) and weight-decay groups."""

from __future__ import annotations

import torch
from torch import nn

from ctsnn.synapses import Dense, Gaussian
from ctsnn.training import count_parameters, weight_groups


def test_counts_learnable_parameters_not_buffers():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    assert count_parameters(model) == 4 * 3 + 3 + 2 * 3
    model[0].bias.requires_grad_(False)
    assert count_parameters(model) == 4 * 3 + 2 * 3


def test_modules_with_their_own_count():
    syn = Dense(6, 4, kernel=Gaussian(), max_delay=0.005, dt=1e-3, learn_delay=False, fan_in=2,
                generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(syn, nn.BatchNorm1d(4))
    # DCLS counts weights and delay positions of every synapse, learnable or not
    assert count_parameters(model) == syn.n_parameters() + 2 * 4
    assert count_parameters(model, active_only=True) == syn.n_parameters(active_only=True) + 8
    assert syn.n_parameters(active_only=True) < syn.n_parameters()


def test_weight_groups_split_norm_layers_and_skip_delays():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    delay = model[2].bias  # stands in for a delay parameter
    groups = weight_groups(model, [delay], weight_decay=1e-2, norm_weight_decay=0.0)
    assert [g["weight_decay"] for g in groups] == [1e-2, 0.0]
    assert [id(p) for p in groups[0]["params"]] == [id(model[0].weight), id(model[0].bias),
                                                    id(model[2].weight)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model[1].parameters()}
    assert len(weight_groups(nn.Linear(2, 2), [], weight_decay=0.0)) == 1  # no empty group
