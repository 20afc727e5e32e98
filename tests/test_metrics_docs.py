"""docs/metrics.md and docs/web.md name every metric the processes export."""

from __future__ import annotations

from prometheus_client import REGISTRY

import facestream.ingest.metrics
import facestream.recognizer.metrics
import facestream.skipped  # noqa: F401 -- these register the workers' and readers' metrics
from facestream.web.metrics import METRICS

from .helpers import REPO


def test_every_metric_is_documented() -> None:
    documented = (REPO / "docs" / "metrics.md").read_text()
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("facestream_"):
            suffix = "_total" if family.type == "counter" else ""
            names.add(family.name + suffix)
    assert len(names) >= 14
    assert sorted(n for n in names if f"`{n}`" not in documented) == []
    web = (REPO / "docs" / "web.md").read_text()
    assert sorted(n for n in METRICS if f"`{n}`" not in web) == []
