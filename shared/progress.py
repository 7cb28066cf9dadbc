"""Whether this process is moving: what /health and the metrics say beyond reachability.

- A partition is stuck when the message at one offset has been in hand (or delivered
  again and again) for longer than STUCK_AFTER_S: a handler that hangs, a dead letter
  that cannot be written. It is free again once a message of that partition completes.
- The outbox relay is failing while its drains raise; parked rows are outbox rows the
  broker refused for good (shared/outbox.py).
- The outside world (the payment provider, the carrier) is failing while every call to
  it goes unanswered (unreachable, refused, timed out) for OUTSIDE_FAILING_AFTER_S.

One Progress per process (`PROGRESS`): the consumers, the relay and /health share it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

STUCK_AFTER_S: Final = 30.0
RELAY_FAILING_AFTER_S: Final = 10.0
OUTSIDE_FAILING_AFTER_S: Final = 30.0


@dataclass
class Held:
    offset: int
    since: float  # when this offset was first delivered (monotonic seconds)
    last_seen: float  # when it was last delivered
    active: bool  # a handler is on it now (else it went back to be delivered again)


# A message that went back to its partition comes again at once; one not seen again for
# this long has moved on (another instance took the partition, or the consumer stopped).
GONE_AFTER_S: Final = 300.0


@dataclass
class Progress:
    stuck_after_s: float = STUCK_AFTER_S
    in_hand: dict[tuple[str, str, int], Held] = field(default_factory=dict)  # (group, topic, p)
    relay_failing_since: float | None = None
    relay_error: str = ""
    parked_rows: int = 0
    # party -> (since when its calls go unanswered, the last error in words)
    outside_failing: dict[str, tuple[float, str]] = field(default_factory=dict)

    def started(self, group: str, topic: str, partition: int, offset: int) -> None:
        """A message is in hand; the same offset again keeps its first time."""
        key, now = (group, topic, partition), time.monotonic()
        held = self.in_hand.get(key)
        since = held.since if held is not None and held.offset == offset else now
        self.in_hand[key] = Held(offset, since, now, active=True)

    def finished(self, group: str, topic: str, partition: int) -> None:
        self.in_hand.pop((group, topic, partition), None)

    def given_back(self, group: str, topic: str, partition: int) -> None:
        """The handler failed: the message goes back to be delivered again."""
        held = self.in_hand.get((group, topic, partition))
        if held is not None:
            held.active = False

    def stuck(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [
            {
                "group": group,
                "topic": topic,
                "partition": partition,
                "offset": held.offset,
                "for_s": round(now - held.since, 1),
            }
            for (group, topic, partition), held in sorted(self.in_hand.items())
            if now - held.since >= self.stuck_after_s
            and (held.active or now - held.last_seen < GONE_AFTER_S)
        ]

    def relay_failed(self, error: BaseException) -> None:
        if self.relay_failing_since is None:
            self.relay_failing_since = time.monotonic()
        self.relay_error = f"{type(error).__name__}: {error}"[:300]

    def relay_succeeded(self) -> None:
        self.relay_failing_since = None
        self.relay_error = ""

    def outside_failed(self, party: str, error: BaseException) -> None:
        """A call to `party` went unanswered; the first of a run of them starts the clock."""
        since = self.outside_failing.get(party, (time.monotonic(), ""))[0]
        self.outside_failing[party] = (since, f"{type(error).__name__}: {error}"[:300])

    def outside_answered(self, party: str) -> None:
        """`party` answered (a decline is an answer too)."""
        self.outside_failing.pop(party, None)

    def outside_down(self) -> dict[str, tuple[float, str]]:
        """The parties unanswered for OUTSIDE_FAILING_AFTER_S: for how long, and why."""
        now = time.monotonic()
        return {
            party: (now - since, error)
            for party, (since, error) in sorted(self.outside_failing.items())
            if now - since >= OUTSIDE_FAILING_AFTER_S
        }

    def problems(self) -> list[str]:
        """Why this process is degraded, in words; empty when it is not."""
        found = [
            f"partition {s['topic']}[{s['partition']}] of {s['group']} stuck at offset "
            f"{s['offset']} for {s['for_s']}s"
            for s in self.stuck()
        ]
        failing = self.relay_failing_since
        if failing is not None and time.monotonic() - failing >= RELAY_FAILING_AFTER_S:
            found.append(
                f"outbox relay failing for {time.monotonic() - failing:.0f}s: {self.relay_error}"
            )
        if self.parked_rows:
            found.append(f"{self.parked_rows} outbox row(s) parked: the broker refused them")
        found += [
            f"{party} unanswered for {seconds:.0f}s: {error}"
            for party, (seconds, error) in self.outside_down().items()
        ]
        return found


PROGRESS = Progress()


class ProgressCollector(Collector):
    """The same facts as gauges, read at scrape time."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stuck = GaugeMetricFamily(
            "topup_partition_stuck_seconds",
            "How long a partition has been held at one offset (listed past the threshold)",
            labels=["group", "topic", "partition"],
        )
        for entry in self.progress.stuck():
            labels = [str(entry["group"]), str(entry["topic"]), str(entry["partition"])]
            stuck.add_metric(labels, float(str(entry["for_s"])))
        yield stuck
        failing = self.progress.relay_failing_since is not None
        yield GaugeMetricFamily(
            "topup_outbox_relay_failing", "1 while the outbox relay's drains fail", value=failing
        )
        down = GaugeMetricFamily(
            "topup_outside_unanswered_seconds",
            "How long every call to an outside party has gone unanswered (listed past the "
            "threshold)",
            labels=["party"],
        )
        for party, (seconds, _error) in self.progress.outside_down().items():
            down.add_metric([party], seconds)
        yield down
        yield GaugeMetricFamily(
            "topup_outbox_parked_rows",
            "Outbox rows the broker refused for good",
            value=self.progress.parked_rows,
        )


REGISTRY.register(ProgressCollector(PROGRESS))
