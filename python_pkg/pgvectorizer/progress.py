"""A progress report for long runs (`--once` on a big backlog), without third-party packages.

On a terminal it redraws one line in place; anywhere else (a log file, a container's output)
it writes a log line now and then, since carriage returns would only clutter a log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

logger = logging.getLogger(__name__)

# A terminal cannot show more than a few changes a second; more redraws only cost CPU.
REDRAW_INTERVAL = 0.1  # seconds
# Often enough to see a run is alive, rarely enough not to flood the log.
LOG_INTERVAL = 10.0  # seconds
BAR_WIDTH = 30  # characters


def format_duration(seconds: float) -> str:
    """H:MM:SS, rounded to the second (days are folded into the hours)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts done items against a total and reports rate and ETA.

    update() may be called from several threads or tasks at once. Use it as a context
    manager, or call close() at the end for the final line.
    """

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr,
                 interactive: bool | None = None, *, unit: str = "rows",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.unit = unit
        self._total = max(0, total)
        self._done = 0
        self._stream = stream
        self._interactive = stream.isatty() if interactive is None else interactive
        self._clock = clock
        self._start = clock()
        self._last_report = self._start
        self._last_width = 0
        self._closed = False
        self._lock = threading.Lock()
        if self._interactive:
            # Shows the total at once, before the first batch is done.
            self._draw(self._start)

    @property
    def done(self) -> int:
        return self._done

    @property
    def total(self) -> int:
        return self._total

    def update(self, n: int) -> None:
        """Add n finished items; reports when the last report is old enough."""
        with self._lock:
            if self._closed:
                return
            self._done += n
            now = self._clock()
            if self._interactive:
                if now - self._last_report >= REDRAW_INTERVAL:
                    self._draw(now)
            elif now - self._last_report >= LOG_INTERVAL:
                self._last_report = now
                logger.info("%s", self._status(now))

    def set_total(self, total: int) -> None:
        """Change the total (rows that arrived or left the queue since the count)."""
        with self._lock:
            self._total = max(0, total)

    def close(self) -> None:
        """Final report: the full line and a newline on a terminal, totals and average rate in the log."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = self._clock()
            if self._interactive:
                self._draw(now)
                self._stream.write("\n")
                self._stream.flush()
            else:
                elapsed = now - self._start
                logger.info("%s: %d/%d %s in %s, %.1f %s/s average", self.label, self._done,
                            self._total, self.unit, format_duration(elapsed),
                            self.rate(now), self.unit)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- arithmetic, public so that tests and callers can check it -------------------------

    def rate(self, now: float | None = None) -> float:
        """Average items per second since the start (0 before any time has passed)."""
        elapsed = (self._clock() if now is None else now) - self._start
        return self._done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the average rate; None while the rate is still unknown."""
        left = self._total - self._done
        if left <= 0:
            return 0.0
        rate = self.rate(now)
        return left / rate if rate > 0 else None

    def percent(self) -> int:
        """Whole percent done, floored, at most 100 (an empty total counts as done)."""
        if self._total == 0:
            return 100
        return min(100, self._done * 100 // self._total)

    def line(self, now: float | None = None) -> str:
        """The terminal line: label [####......] done/total pct% rate unit/s ETA h:mm:ss."""
        filled = BAR_WIDTH * self.percent() // 100
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {self._status_tail(now)}"

    # --- internals (called with the lock held) --------------------------------------------

    def _status(self, now: float) -> str:
        return f"{self.label}: {self._status_tail(now)}"

    def _status_tail(self, now: float | None) -> str:
        eta = self.eta(now)
        eta_text = "?" if eta is None else format_duration(eta)
        return (f"{self._done}/{self._total} {self.percent()}% "
                f"{self.rate(now):.1f} {self.unit}/s ETA {eta_text}")

    def _draw(self, now: float) -> None:
        self._last_report = now
        text = self.line(now)
        # Spaces wipe what is left of a longer previous line (the ETA can shrink).
        pad = " " * max(0, self._last_width - len(text))
        self._last_width = len(text)
        self._stream.write("\r" + text + pad)
        self._stream.flush()
