"""`make demo` (scripts/demo.sh) end to end: the README's first command must keep working.

It waits for pg_cron's next minute, so it takes about a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO


def test_the_demo_runs_both_loops_and_searches() -> None:
    env = {**os.environ, "PY": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    # pg_cron ran the in-database job, which stored all 18 published posts.
    assert "ai_vectorizer_1_run | succeeded" in out
    assert "             18 |     18" in out
    # The worker's store holds the same vectors.
    assert "     18 |                18 |" in out
    # The one-statement searches find the obvious posts first.
    for first in ("Reading query plans without fear", "Home batteries and time-of-use tariffs",
                  "The quiet power of spaced repetition"):
        assert f"\n {first}" in out, out[-3000:]
