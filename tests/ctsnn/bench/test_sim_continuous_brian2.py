"""The script run inside the Brian2 environment: its imports and its Brian2-free helpers."""

from __future__ import annotations

import ast
import sys

import numpy as np

from ctsnn.bench import brian2_side, sim_continuous_brian2


def test_script_imports_only_numpy_brian2_and_the_standard_library() -> None:
    # It runs in its own venv (numpy < 2, no torch, no ctsnn), started by path.
    tree = ast.parse(brian2_side.SCRIPT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"numpy", "brian2"}


def test_split_same_step_moves_second_spikes_to_extra_generators() -> None:
    dt = 1e-4
    # input 0 spikes twice in step 0 and once in step 5; input 1 once in step 0
    times = np.array([0.00001, 0.00005, 0.00002, 0.00051])
    indices = np.array([0, 0, 1, 0])
    gen, sources = sim_continuous_brian2.split_same_step(times, indices, n_in=2, dt=dt)
    np.testing.assert_array_equal(gen, [0, 2, 1, 0])
    np.testing.assert_array_equal(sources, [0, 1, 0])
