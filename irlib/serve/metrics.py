"""`irlib serve`'s own `/metrics`, in Prometheus' text exposition format (version 0.0.4):
runs by runbook and outcome, webhook decisions, the 503 refusals, the queue and the runs under
way, and histograms of the time from a webhook's arrival to its verdict and to its chat
message. Written by hand in a few lines: prometheus_client is only in the `lab` extra, and the
runtime (the CronJob image) takes no dependency for this. Talks to nothing.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: a warm run answers in a few, a cold one in 5-15 here, a slow target in minutes
BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, math.inf)
Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.total += value
        self.count += 1


HISTOGRAMS = {
    "irlib_serve_webhook_to_verdict_seconds": "From a webhook's arrival to its run's verdict.",
    "irlib_serve_webhook_to_message_seconds": "From a webhook's arrival to its chat message.",
}


class Metrics:
    """Counters and histograms, updated by triage under its own lock; read by `/metrics`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: Counter[Labels] = Counter()
        self._webhooks: Counter[Labels] = Counter()
        self._histograms: dict[str, dict[Labels, _Histogram]] = {n: {} for n in HISTOGRAMS}

    def webhook(self, action: str) -> None:
        with self._lock:
            self._webhooks[(("action", action),)] += 1

    def run_finished(self, runbook: str, outcome: str) -> None:
        with self._lock:
            self._runs[(("runbook", runbook), ("outcome", outcome))] += 1

    def observe(self, name: str, runbook: str, seconds: float) -> None:
        if name not in HISTOGRAMS:
            raise ValueError(f"no histogram {name}")
        with self._lock:
            found = self._histograms[name].setdefault((("runbook", runbook),), _Histogram())
            found.observe(seconds)

    def exposition(self, gauges: Mapping[str, tuple[str, float]]) -> str:
        """Every metric as text; `gauges` maps a name to (help, value) read at this moment."""
        with self._lock:
            refused = sum(n for k, n in self._webhooks.items() if dict(k)["action"] == "full")
            lines = [
                *_counter("irlib_serve_runs_total", "Triage runs ended, by outcome.", self._runs),
                *_counter(
                    "irlib_serve_webhooks_total",
                    "Webhook calls by what became of them (queued, full, cooldown, ...).",
                    self._webhooks,
                ),
                *_counter(
                    "irlib_serve_refused_total",
                    "Webhook calls answered 503 (every run slot taken; Alertmanager retries).",
                    {(): refused},
                ),
            ]
            for name, help_text in HISTOGRAMS.items():
                lines += _histogram(name, help_text, self._histograms[name])
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_num(value)}"]
        return "\n".join(lines) + "\n"


def _counter(name: str, help_text: str, values: Mapping[Labels, float]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    return lines + [f"{name}{_labels(k)} {_num(v)}" for k, v in sorted(values.items())]


def _histogram(name: str, help_text: str, series: Mapping[Labels, _Histogram]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, h in sorted(series.items()):
        for bound, n in zip(BUCKETS, h.buckets, strict=True):
            le = "+Inf" if math.isinf(bound) else repr(bound)
            lines.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {n}")
        lines.append(f"{name}_sum{_labels(labels)} {_num(h.total)}")
        lines.append(f"{name}_count{_labels(labels)} {h.count}")
    return lines


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


__all__ = ["CONTENT_TYPE", "HISTOGRAMS", "Metrics"]
