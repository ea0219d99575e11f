"""AdLIF, AdEx and Izhikevich refuse a reset at or above threshold at construction (issue 9,
item 6: before, they were accepted and the two time modes disagreed 96 to 1 spikes)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("build, message", [
    (lambda: ctsnn.AdLIF(2, v_reset=1.5), r"AdLIF: v_reset = 1\.5 must be below v_threshold"),
    (lambda: ctsnn.AdLIF(2, v_reset=1.0), r"AdLIF: v_reset = 1\.0 must be below v_threshold"),
    (lambda: ctsnn.AdLIF(3, v_threshold=torch.tensor([1.0, 0.5, 2.0]), v_reset=0.5),
     r"v_threshold = 0\.5 \(neuron 1\)"),
    (lambda: ctsnn.AdEx(1, v_reset=-20.0), r"AdEx: v_reset = -20\.0 must be below v_peak"),
    (lambda: ctsnn.AdEx(1, v_reset=-50.0, v_peak=-50.0), "AdEx: v_reset"),
    (lambda: ctsnn.Izhikevich(2, c=30.0), r"Izhikevich: c = 30\.0 must be below v_peak"),
    (lambda: ctsnn.Izhikevich(2, c=-65.0, v_peak=-70.0), r"Izhikevich: c = -65\.0"),
])
def test_reset_at_or_above_threshold_is_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@settings(max_examples=40, deadline=None)
@given(reset=st.floats(-3.0, 3.0), threshold=st.floats(-3.0, 3.0),
       model=st.sampled_from(["AdLIF", "AdEx", "Izhikevich"]))
def test_construction_succeeds_exactly_when_the_reset_is_below_threshold(reset, threshold,
                                                                         model):
    build = {
        "AdLIF": lambda: ctsnn.AdLIF(2, v_reset=reset, v_threshold=threshold),
        "AdEx": lambda: ctsnn.AdEx(2, v_reset=reset, v_peak=threshold),
        "Izhikevich": lambda: ctsnn.Izhikevich(2, c=reset, v_peak=threshold),
    }[model]
    if reset < threshold:
        build()
    else:
        with pytest.raises(ValueError, match="must be below"):
            build()


def test_defaults_are_accepted():
    ctsnn.AdLIF(3), ctsnn.AdEx(3), ctsnn.Izhikevich(3)
