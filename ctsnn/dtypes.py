"""Floating-point dtypes: one per model and per simulation, and exact dtype conversions.

The rules (see also docs/guide.md, "Dtypes"):

* **A model has one dtype**: that of its floating tensor arguments, else the default dtype at
  construction (``torch.get_default_dtype()``). Python numbers take the model's dtype. Tensor
  arguments of two floating dtypes in one model are an error naming both.
* **Conversions are exact.** Modules that mix in :class:`ExactValues` keep a float64 copy of
  the value each of their constants was built from (a Python float ``0.02``, a float64 tensor,
  delays drawn in float64). ``.double()``, ``.to(torch.float64)``, ``.float()`` ... re-derive a
  constant from that copy as long as it still holds its construction value (untrained, not
  loaded from elsewhere); a trained or loaded value is simply cast. So
  ``LIF(1, tau_mem=0.02).double()`` holds exactly ``0.02`` and simulates exactly like a model
  built under a float64 default.
* **A simulation runs in one dtype, float32 or float64** (:func:`check_simulation_dtypes`):
  the dtype of the first layer's model; every layer's parameters and buffers (neurons,
  synapse weights and delays, recurrent synapses), the input (tensor or :class:`Spikes`) and
  the initial states must have it. A mismatch is an error naming both dtypes and where; half
  precision (float16, bfloat16) is refused: spike-time root finding and time arithmetic need
  float32 or float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: Dtypes a simulation runs in.
SIMULATION_DTYPES = (torch.float32, torch.float64)


class ExactValues:
    """Mixin for ``nn.Module``: dtype conversions re-derive constants from float64 copies.

    Call :meth:`remember_exact` after registering a parameter or buffer ``name`` with the
    value it was built from. Then every ``_apply`` (``.to``, ``.double()``, ``.float()``,
    ``.half()``, ``.cuda()`` ...) sets that tensor to the float64 copy rounded once to the new
    dtype, instead of the old value rounded twice, provided the tensor still equals the copy
    rounded to its current dtype (otherwise it has been trained or loaded: it is cast).
    Nothing is done during a forward pass.
    """

    def remember_exact(self, name: str, value: Tensor | float | Sequence[float]) -> None:
        """Keep ``value`` (float64, on the CPU) as the exact value of the tensor ``name``."""
        exact = (value.detach() if isinstance(value, Tensor)
                 else torch.as_tensor(value, dtype=torch.float64))  # not via the default dtype
        exact = exact.to("cpu", torch.float64).clone()
        self.__dict__.setdefault("_exact_values", {})[name] = exact

    def exact_value(self, name: str) -> Tensor:
        """The float64 value of ``name``: its remembered value if intact, else the tensor."""
        current = getattr(self, name)
        exact = self.__dict__.get("_exact_values", {}).get(name)
        if exact is not None and _holds(current, exact):
            return exact.to(current.device)
        return current.detach().to(torch.float64)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Any:
        store: dict[str, Tensor] = self.__dict__.get("_exact_values", {})
        intact = [name for name, exact in store.items()
                  if _holds(getattr(self, name, None), exact)]
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        with torch.no_grad():
            for name in intact:
                t = getattr(self, name)
                if not isinstance(t, Tensor) or not t.is_floating_point() or t.is_meta:
                    continue
                exact = store[name].to(device=t.device, dtype=t.dtype).expand_as(t)
                if isinstance(t, nn.Parameter):
                    t.data = exact.clone()
                else:
                    self._buffers[name] = exact.clone()  # type: ignore[attr-defined]
        return out


def _holds(t: Any, exact: Tensor) -> bool:
    """Whether tensor ``t`` equals ``exact`` rounded to ``t``'s dtype."""
    if not isinstance(t, Tensor) or not t.is_floating_point() or t.is_meta:
        return False
    if tuple(torch.broadcast_shapes(t.shape, exact.shape)) != tuple(t.shape):
        return False
    return bool((t.detach() == exact.to(device=t.device, dtype=t.dtype)).all())


def _floating(named: Iterable[tuple[str, Tensor | None]]) -> Iterable[tuple[str, Tensor]]:
    return ((n, t) for n, t in named if isinstance(t, Tensor) and t.is_floating_point())


def check_simulation_dtypes(layers: Sequence[nn.Module], models: Sequence[nn.Module],
                            input: Any, states: Sequence[Any]) -> torch.dtype:
    """The one dtype of a simulation (see the module docstring), or an error.

    Args:
        layers: the layers (``nn.Module``; their parameters and buffers are checked).
        models: each layer's neuron model (sets the dtype: ``models[0]``).
        input: a tensor or an object with a ``dtype`` (``Spikes``) or ``None``.
        states: the initial state per layer (a tuple of tensors) or ``None``.
    """
    reference = next(iter(_floating(models[0].named_buffers())), None) or next(
        iter(_floating(models[0].named_parameters())), None)
    dtype = reference[1].dtype if reference is not None else torch.get_default_dtype()
    where = (f"layer 0's model {type(models[0]).__name__} (parameter {reference[0]})"
             if reference is not None else "the default dtype")
    if dtype not in SIMULATION_DTYPES:
        raise TypeError(
            f"simulate runs in float32 or float64, but {where} is {dtype}: spike-time root "
            "finding and time arithmetic need float32 or float64; convert the network with "
            ".float() or .double()")

    def check(what: str, got: torch.dtype) -> None:
        if got != dtype:
            raise TypeError(
                f"dtype mismatch: {what} is {got} but {where} is {dtype}; a simulation runs in "
                f"one dtype: convert with .to({dtype})")

    for k, layer in enumerate(layers):
        seen: set[int] = set()
        for name, t in _floating([*layer.named_parameters(), *layer.named_buffers()]):
            if id(t) not in seen:
                seen.add(id(t))
                check(f"layer {k}'s {type(layer).__name__}.{name}", t.dtype)
    if isinstance(input, Tensor):
        check("the input tensor", input.dtype)
    elif input is not None and hasattr(input, "dtype"):
        check(f"the input {type(input).__name__}", input.dtype)
    for k, state in enumerate(states):
        if isinstance(state, tuple):
            fields = getattr(state, "_fields", None) or [str(i) for i in range(len(state))]
            for name, t in _floating(zip(fields, state, strict=False)):
                check(f"layer {k}'s initial state {name}", t.dtype)
    return dtype


__all__ = ["ExactValues", "SIMULATION_DTYPES", "check_simulation_dtypes", "default_dtype"]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default dtype (e.g. to build a model in float64)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
