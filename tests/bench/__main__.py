"""`python -m tests.bench [--smoke] [--profile]`: the benchmark of issue 6 (see run.py).

Exits 1 when an invariant is violated; the speed targets are reported, never enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from rich.console import Console

from tests.bench.report import RESULTS, print_report
from tests.bench.run import Options, run
from tests.bench.sizes import FULL, SMOKE, with_overrides


def _levels(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per phase")
    parser.add_argument("--profile", action="store_true", help="py-spy every service once more")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the run's folder goes")
    parser.add_argument(
        "--simulator-latency-ms",
        type=float,
        default=1.0,
        help="the simulated provider's and carrier's latency",
    )
    parser.add_argument("--note", default="", help="kept in results.json and on the chart")
    sizes = parser.add_argument_group("sizes (defaults: the full run, or --smoke)")
    sizes.add_argument("--ramp-levels", type=_levels, help="orders in flight, e.g. 8,16,32")
    sizes.add_argument("--raw-ramp-levels", type=_levels)
    sizes.add_argument("--ramp-s", type=float)
    sizes.add_argument("--closed-s", type=float)
    sizes.add_argument("--open-s", type=float)
    sizes.add_argument("--open-fractions", type=_fractions, help="of the maximum, e.g. .25,.5,.75")
    sizes.add_argument("--warmup-s", type=float)
    sizes.add_argument("--drain-s", type=float)
    sizes.add_argument("--settle-s", type=float)
    sizes.add_argument("--profile-s", type=float)
    args = parser.parse_args(argv)
    return Options(
        sizes=with_overrides(SMOKE if args.smoke else FULL, vars(args)),
        mode="smoke" if args.smoke else "full",
        results=args.results,
        simulator_latency_ms=args.simulator_latency_ms,
        profile=args.profile,
        note=args.note,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    # Our clients' reconnect chatter is not the benchmark's business.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console()
    figures, out_dir = asyncio.run(run(options, console))
    print_report(figures, console)
    console.print(f"results: {out_dir / 'results.json'}  chart: {out_dir / 'chart.png'}")
    return 1 if figures["invariants"]["violation_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
