"""The event log A/B bench (`make bench-events-ab`) compares this tree with itself minus the event
log, by applying `loadtests/event_log_off.patch`. A change to the code it patches must keep the
patch applying, or the bench's "off" side silently stops existing: caught here, not on bench day."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATCH = ROOT / "loadtests" / "event_log_off.patch"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_the_event_log_off_patch_still_applies_to_the_tree_and_removes_each_part_of_the_log() -> None:
    check = subprocess.run(["git", "apply", "--check", str(PATCH)], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, f"loadtests/event_log_off.patch no longer applies: {check.stderr}"
    text = PATCH.read_text()
    # Each part of the log the "off" side must lack: the event in the group commit, every other
    # recording site, the relay and the consumer groups.
    for path in ("server/conversations/commit.py", "server/events/record.py", "workers/event_relay.py",
                 "workers/runtime/consumer_groups.py"):
        assert f"+++ b/{path}" in text, path
    assert "-    INSERT INTO event_rows" in text


def test_the_commit_cost_bench_still_finds_the_event_in_the_group_commit() -> None:
    """`make bench-commit-cost` swaps the commit statement's event part: each variant must differ
    from the others in that part alone, or the bench measures nothing."""
    from loadtests.commit_cost import EVENT_END, EVENT_START, variants
    from server.conversations.commit import _COMMIT_SQL

    found = variants()
    assert found["current"] == _COMMIT_SQL
    assert "INSERT INTO event_rows" not in found["none"]
    assert "message_ids" in found["current"] and "json_build_object('message'" in found["copy"]
    assert "message_ids" not in found["per_message"] and "message_id," in found["per_message"]
    heads = {sql[:sql.index(EVENT_START)] for sql in found.values()}
    tails = {sql[sql.index(EVENT_END):] for sql in found.values()}
    assert len(heads) == 1 and len(tails) == 1


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists()
                    or not (ROOT / "static" / "node_modules" / "socket.io-client").exists(),
                    reason="needs a git checkout and the bench's Node client")
def test_the_ab_bench_stopped_by_sigterm_leaves_no_worktree_behind() -> None:
    def worktrees() -> list[str]:
        listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return [line for line in listed.stdout.splitlines() if line.startswith("worktree ")]

    def folders() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("replyhq-event-ab-*"))

    before, folders_before = worktrees(), folders()
    bench = subprocess.Popen([sys.executable, "-m", "loadtests.event_log_ab", "--rounds", "1", "--duration", "1"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(worktrees()) < len(before) + 2:  # both trees made: its first run is starting
            assert bench.poll() is None and time.monotonic() < deadline, "the bench made no trees"
            time.sleep(0.1)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if bench.poll() is None:
            bench.kill()
    assert worktrees() == before
    assert folders() == folders_before


def test_the_ab_bench_summarises_each_client_count_with_each_sides_commit_time() -> None:
    from loadtests.event_log_ab import _counts, _summary

    assert _counts("10, 100,1000") == [10, 100, 1000]
    with pytest.raises(argparse.ArgumentTypeError):
        _counts("0")

    def run(rate: float, commit_ms: float) -> dict[str, object]:
        return {"msgs_per_s": rate, "commit_ms_avg": commit_ms, "lost": 0, "duplicated": 0,
                "cpu_ms_per_msg": {"server": 0.1, "total": 0.2}}

    summary = _summary({"off": [run(1000, 3.0), run(1200, 3.2)], "on": [run(950, 3.3), run(1080, 3.5)]})
    assert summary["on_over_off"] == round(1015 / 1100, 3)
    assert summary["median_pair"] == round((0.95 + 0.9) / 2, 3)
    assert summary["commit_ms_avg"] == {"off": 3.1, "on": 3.4}
