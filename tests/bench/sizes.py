"""How long each phase of the benchmark runs and how hard it pushes: the full run of
`make bench` (about 5-8 minutes on the 2-core machine) and the smoke run of `make test`
(a few seconds per phase). Every size can be overridden from the command line."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    # Closed loop: orders kept in flight, tried in this order until throughput has not
    # improved on the best by more than `ramp_gain` for `ramp_patience` levels in a row
    # (one noisy level does not end the ramp), or the p99 passes `ramp_p99_limit_ms`.
    ramp_levels: tuple[int, ...]
    raw_ramp_levels: tuple[int, ...]
    ramp_s: float  # each level of the ramp
    closed_s: float  # the measured closed-loop phase, at the best level
    open_s: float  # each open-loop phase
    open_fractions: tuple[float, ...]  # of the closed-loop maximum
    warmup_s: float  # the start of every phase, not counted
    drain_s: float  # how long to wait for the orders still in flight after a phase
    settle_s: float  # how long to wait, at the end, for every order to end
    profile_s: float  # the profiled closed-loop phase (--profile)
    open_rates: tuple[float, ...] = (10.0,)  # open-loop phases at fixed orders/s, first
    ramp_gain: float = 0.05
    ramp_patience: int = 2
    ramp_p99_limit_ms: float = 2000.0


FULL = Sizes(
    ramp_levels=(8, 16, 32, 64, 128, 256),
    raw_ramp_levels=(16, 32, 64, 128, 256, 512, 1024),
    ramp_s=6.0,
    closed_s=40.0,
    open_s=40.0,
    open_fractions=(0.25, 0.5, 0.75),
    warmup_s=1.5,
    drain_s=30.0,
    settle_s=120.0,
    profile_s=20.0,
)

SMOKE = Sizes(
    ramp_levels=(4, 16),
    raw_ramp_levels=(8, 32),
    ramp_s=1.5,
    closed_s=2.5,
    open_s=1.5,
    open_fractions=(0.25, 0.5, 0.75),
    warmup_s=0.5,
    drain_s=15.0,
    settle_s=30.0,
    profile_s=3.0,
)


def with_overrides(sizes: Sizes, overrides: dict[str, Any]) -> Sizes:
    """`sizes` with the given fields replaced (None: keep)."""
    known = {f.name for f in fields(Sizes)}
    return replace(sizes, **{k: v for k, v in overrides.items() if k in known and v is not None})
