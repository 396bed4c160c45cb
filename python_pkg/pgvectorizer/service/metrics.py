"""Prometheus metrics in the text exposition format, kept by hand: a few counters and one
histogram need no client library (and no process-wide registry that tests would share)."""

from __future__ import annotations

from collections import Counter

# Seconds from a request's arrival to its task's result: tens of milliseconds on a warm GPU,
# minutes when the queue is long or no worker is up.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
PREFIX = "pgvectorizer_queue"


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status) -> count
        self.submitted = 0
        self.texts = 0
        self.finished: Counter[str] = Counter()  # state -> count
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe_latency(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._latency_sum += seconds
        self._latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self._buckets[i] += 1

    def render(self, tasks: dict[str, int], workers: int, states: tuple[str, ...]) -> str:
        """The exposition text; tasks and workers are read from the store by the caller."""
        p = PREFIX
        lines = [
            f"# HELP {p}_depth Tasks waiting for a worker (pending).",
            f"# TYPE {p}_depth gauge",
            f"{p}_depth {tasks.get('pending', 0)}",
            f"# HELP {p}_tasks Tasks in the store by state.",
            f"# TYPE {p}_tasks gauge",
            *(f'{p}_tasks{{state="{s}"}} {tasks.get(s, 0)}' for s in states),
            f"# HELP {p}_workers GPU workers that asked for work recently.",
            f"# TYPE {p}_workers gauge",
            f"{p}_workers {workers}",
            f"# HELP {p}_submitted_tasks_total Tasks accepted by this process.",
            f"# TYPE {p}_submitted_tasks_total counter",
            f"{p}_submitted_tasks_total {self.submitted}",
            f"# HELP {p}_submitted_texts_total Texts accepted by this process.",
            f"# TYPE {p}_submitted_texts_total counter",
            f"{p}_submitted_texts_total {self.texts}",
            f"# HELP {p}_finished_tasks_total Tasks finished through this process, by state.",
            f"# TYPE {p}_finished_tasks_total counter",
            *(f'{p}_finished_tasks_total{{state="{s}"}} {self.finished[s]}'
              for s in ("completed", "failed")),
            f"# HELP {p}_requests_total HTTP requests answered, by route and status.",
            f"# TYPE {p}_requests_total counter",
            *(f'{p}_requests_total{{route="{route}",code="{code}"}} {n}'
              for (route, code), n in sorted(self.requests.items())),
            f"# HELP {p}_task_seconds Seconds from a task's submission to its vectors (completed tasks).",
            f"# TYPE {p}_task_seconds histogram",
            *(f'{p}_task_seconds_bucket{{le="{bound:g}"}} {n}'
              for bound, n in zip(LATENCY_BUCKETS, self._buckets, strict=True)),
            f'{p}_task_seconds_bucket{{le="+Inf"}} {self._latency_count}',
            f"{p}_task_seconds_sum {self._latency_sum:.6f}",
            f"{p}_task_seconds_count {self._latency_count}",
        ]
        return "\n".join(lines) + "\n"
