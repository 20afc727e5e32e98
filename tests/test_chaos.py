"""Chaos: ≥1,000 frames through worker processes while workers and Redis are SIGKILLed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability import print_table, run_chaos


@pytest.mark.timeout(480)
def test_nothing_lost_nothing_doubled_under_kills(tmp_path: Path, model_cache: Path) -> None:
    report = run_chaos(tmp_path, model_cache, frames=1000, distinct=400)
    print_table(report)  # shown with -rA / on failure: the figures this run saw
    assert report.replay_exit == 0
    assert report.replay_sent == report.files == 1000
    assert report.frame_entries == 1000
    assert report.duplicate_seqs == 0
    assert report.worker_kills >= 5
    assert report.redis_kills == 2
    assert report.lost == 0
    assert report.doubled == 0
    assert report.good_dead == 0, report.dead_reasons
    assert report.hostile_dead == report.hostile == 9
    assert report.results == 1000
    assert report.dead_letters == report.hostile
