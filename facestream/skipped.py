"""The count of malformed stream entries and records that readers skip, by reader and reason.

Every reader that skips what it cannot parse (tails, subscribers and so the bridges, the
page's feed, visits and dead-letter list, status) counts it here, besides its own stats and
log line; processes with a /metrics endpoint (bridges, the page, workers) export it.
"""

from __future__ import annotations

from prometheus_client import Counter

from facestream.schemas import clip

__all__ = ["SKIPPED", "count_skipped"]

SKIPPED = Counter(
    "facestream_entries_skipped",
    "Malformed stream entries and records skipped (each logged), by reader and reason",
    ["reader", "reason"],
)


def count_skipped(reader: str, reason: str) -> str:
    """Count one skip; returns its reason as a short, bounded label (the log has it all)."""
    label = clip(reason.split(":", 1)[0], 60)
    SKIPPED.labels(reader, label).inc()
    return label
