"""ctsnn._checks: the finiteness check finds every NaN/inf, also behind its one-sum shortcut."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn._checks import check_finite


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), where=st.floats(0, 1), bad=st.sampled_from(
    [float("nan"), float("inf"), -float("inf")]), dtype=st.sampled_from(
    [torch.float32, torch.float64, torch.float16]))
def test_any_non_finite_entry_is_reported_with_its_index(n, where, bad, dtype):
    x = torch.rand(n, dtype=torch.float64).to(dtype)
    k = min(int(where * n), n - 1)
    x[k] = bad
    with pytest.raises(ValueError, match=rf"at index \({k},\)"):
        check_finite("x", x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_finite_values_whose_sum_overflows_pass(dtype):
    x = torch.full((4096,), torch.finfo(dtype).max / 2, dtype=dtype)
    assert not torch.isfinite(x.sum())  # the shortcut fails, the full check decides
    check_finite("x", x)


def test_inf_and_minus_inf_together_are_reported():
    x = torch.zeros(3000)
    x[10], x[20] = float("inf"), -float("inf")
    with pytest.raises(ValueError, match=r"at index \(10,\)"):
        check_finite("x", x)
