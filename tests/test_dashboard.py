"""The provisioned Grafana dashboard asks only for metrics the processes export."""

from __future__ import annotations

import re

import orjson
import yaml

from .helpers import REPO

GRAFANA = REPO / "compose" / "grafana"


def test_every_panel_queries_documented_metrics() -> None:
    dashboard = orjson.loads((GRAFANA / "dashboards" / "facestream.json").read_bytes())
    documented = (REPO / "docs" / "metrics.md").read_text() + (REPO / "docs" / "web.md").read_text()
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = source["datasources"][0]["uid"]
    assert len(dashboard["panels"]) >= 12
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            names = re.findall(r"\bfacestream_[a-z_]+", target["expr"])
            assert names, panel["title"]
            for name in names:
                base = re.sub(r"_(bucket|sum|count)$", "", name)  # histogram series
                assert f"`{base}`" in documented, f"{panel['title']}: {name} is not exported"
