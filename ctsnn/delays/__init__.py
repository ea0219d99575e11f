"""Delay-learning schedules (DCLS and DelRec sigma schedules, EventProp's ease-in).

Delay kernels and delayed synapses live in :mod:`ctsnn.synapses`.
"""

from .schedules import DCLSSigmaSchedule, DelRecSigmaSchedule, EaseInSchedule, ease_in

__all__ = ["DCLSSigmaSchedule", "DelRecSigmaSchedule", "EaseInSchedule", "ease_in"]
