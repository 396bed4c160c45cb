"""Progress: the redrawn terminal line, the occasional log line, and the rate and ETA arithmetic."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from pgvectorizer import progress
from pgvectorizer.progress import BAR_WIDTH, Progress, format_duration


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def frames(stream: io.StringIO) -> list[str]:
    """Each redraw, without its carriage return."""
    return stream.getvalue().split("\r")[1:]


def bar(percent: int) -> str:
    filled = BAR_WIDTH * percent // 100
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- arithmetic ---------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0:00:00"), (0.4, "0:00:00"), (0.6, "0:00:01"), (33, "0:00:33"), (3725, "1:02:05"),
    (90000, "25:00:00"), (-5, "0:00:00"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rate_eta_and_percent(clock: Clock) -> None:
    p = Progress("embed", 20000, io.StringIO(), interactive=False, clock=clock)
    assert p.rate() == 0.0 and p.eta() is None and p.percent() == 0  # no time has passed yet
    clock.advance(2.0)
    p.update(1234)
    assert p.rate() == pytest.approx(617.0)
    assert p.eta() == pytest.approx((20000 - 1234) / 617.0)
    assert p.percent() == 6  # 6.17 floors to 6
    clock.advance(2.0)
    assert p.rate() == pytest.approx(308.5)  # an average since the start, idle time included


def test_done_past_total_is_100_percent_and_no_time_left(clock: Clock) -> None:
    # Rows can arrive while a run is under way.
    p = Progress("embed", 10, io.StringIO(), interactive=False, clock=clock)
    clock.advance(1)
    p.update(15)
    assert (p.percent(), p.eta(), p.done) == (100, 0.0, 15)


def test_empty_total_counts_as_done(clock: Clock) -> None:
    p = Progress("embed", 0, io.StringIO(), interactive=False, clock=clock)
    assert (p.percent(), p.eta()) == (100, 0.0)


def test_set_total(clock: Clock) -> None:
    p = Progress("embed", 100, io.StringIO(), interactive=False, clock=clock)
    p.update(50)
    p.set_total(200)
    assert (p.total, p.percent()) == (200, 25)


# --- terminal -----------------------------------------------------------------------------

def test_interactive_line_format(clock: Clock) -> None:
    out = io.StringIO()
    p = Progress("embed", 20000, out, interactive=True, clock=clock)
    assert frames(out) == [f"embed {bar(0)} 0/20000 0% 0.0 rows/s ETA ?"]
    clock.advance(2.0)
    p.update(1234)
    assert frames(out)[-1] == f"embed {bar(6)} 1234/20000 6% 617.0 rows/s ETA 0:00:30"
    assert "\n" not in out.getvalue()


def test_interactive_redraws_at_most_ten_times_a_second(clock: Clock) -> None:
    out = io.StringIO()
    p = Progress("embed", 1000, out, interactive=True, clock=clock)
    for _ in range(50):
        clock.advance(0.01)
        p.update(1)
    # 0.5 s of updates every 10 ms: one redraw per 0.1 s, plus the first line.
    assert len(frames(out)) == 1 + 5


def test_interactive_wipes_a_longer_previous_line(clock: Clock) -> None:
    out = io.StringIO()
    p = Progress("embed", 100000, out, interactive=True, clock=clock)
    clock.advance(0.5)
    p.update(500)  # 1000.0 rows/s
    clock.advance(100.0)
    p.update(1)  # a stall: 5.0 rows/s, three characters shorter
    before, after = frames(out)[-2:]
    text = f"embed {bar(0)} 501/100000 0% 5.0 rows/s ETA {format_duration(99499 / (501 / 100.5))}"
    assert len(text) < len(before)
    assert after == text + " " * (len(before) - len(text))


def test_interactive_close_draws_the_final_line_and_a_newline(clock: Clock) -> None:
    out = io.StringIO()
    with Progress("embed", 100, out, interactive=True, clock=clock) as p:
        clock.advance(0.05)
        p.update(100)  # too soon to redraw
    assert out.getvalue().endswith(f"\rembed {bar(100)} 100/100 100% 2000.0 rows/s ETA 0:00:00\n")
    p.close()
    p.update(5)
    assert out.getvalue().count("\n") == 1 and p.done == 100


def test_interactive_defaults_to_the_streams_isatty(clock: Clock) -> None:
    tty = Tty()
    Progress("embed", 10, tty, clock=clock)
    assert tty.getvalue().startswith("\rembed [")
    plain = io.StringIO()
    Progress("embed", 10, plain, clock=clock).close()
    assert plain.getvalue() == ""


# --- log ------------------------------------------------------------------------------------

def test_non_interactive_logs_every_ten_seconds(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgvectorizer.progress")
    out = io.StringIO()
    p = Progress("embed", 20000, out, interactive=False, clock=clock)
    for _ in range(8):  # 5 s apart: a log line every second update
        clock.advance(5.0)
        p.update(2500)
    assert progress.LOG_INTERVAL == 10.0
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "embed: 5000/20000 25% 500.0 rows/s ETA 0:00:30",
        "embed: 10000/20000 50% 500.0 rows/s ETA 0:00:20",
        "embed: 15000/20000 75% 500.0 rows/s ETA 0:00:10",
        "embed: 20000/20000 100% 500.0 rows/s ETA 0:00:00",
    ]
    caplog.clear()
    clock.advance(10.0)
    p.close()
    assert [r.getMessage() for r in caplog.records] == [
        "embed: 20000/20000 rows in 0:00:50, 400.0 rows/s average"]
    assert out.getvalue() == ""  # nothing goes to the stream itself


def test_non_interactive_short_run_logs_only_at_close(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgvectorizer.progress")
    p = Progress("embed", 10, io.StringIO(), interactive=False, clock=clock, unit="chunks")
    clock.advance(4.0)
    p.update(10)
    p.close()
    p.close()
    assert [r.getMessage() for r in caplog.records] == ["embed: 10/10 chunks in 0:00:04, 2.5 chunks/s average"]


# --- threads ----------------------------------------------------------------------------------

def test_updates_from_many_threads_all_count() -> None:
    out = io.StringIO()
    p = Progress("embed", 80000, out, interactive=True)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(10000):
            p.update(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    assert p.done == 80000
    # Every frame is whole: no thread wrote into the middle of another's line.
    for frame in frames(out):
        assert frame.rstrip().startswith("embed [") and "ETA" in frame
