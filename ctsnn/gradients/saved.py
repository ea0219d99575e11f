"""How much memory a backward pass will hold: the tensors autograd saves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor


@contextmanager
def _count_saved(box: list[int]) -> Iterator[None]:
    def pack(t: Tensor) -> Tensor:
        box[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def measure_saved_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, bytes of all tensors saved for backward)``.

    Counts every tensor autograd keeps during ``fn`` (custom ``Function``\\ s included): the
    memory the backward pass will hold on to.
    """
    box = [0]
    with _count_saved(box):
        out = fn()
    return out, box[0]
