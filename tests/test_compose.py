"""compose/ read as Docker would: services, Prometheus and Grafana agree with each other.

No Docker engine runs in CI, so this is what keeps the files honest: every scrape target is a
service listening on that port, Grafana finds its provisioning and dashboards where they are
mounted, every secret file is one `facestream acl generate --secrets` makes (or the README
tells the operator to write), and nothing is published beyond the host's loopback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from facestream.acl import SERVICE_SECRETS, plan_users, write_secrets
from facestream.config import load_settings
from facestream.web import WebSettings

from .helpers import REPO

COMPOSE = REPO / "compose"
SPEC: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = SPEC["services"]
PROMETHEUS: dict[str, Any] = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
PROVISIONING = COMPOSE / "grafana" / "provisioning"
_DEFAULT = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")  # ${NAME:-default} as compose expands it


def _expand(text: str) -> str:
    """A compose value with every variable at its default (what .env.example sets too)."""
    return _DEFAULT.sub(lambda match: match.group(1), text)


def _mounts(service: str) -> dict[str, str]:
    """Target in the container → source on the host, of a service's volumes."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def _listens_on(service: str) -> set[int]:
    """The ports a facestream service serves HTTP on, read from its command."""
    command = [_expand(str(arg)) for arg in SERVICES[service]["command"]]

    def option(name: str) -> int | None:
        return int(command[command.index(name) + 1]) if name in command else None

    if command[0] == "web":
        return {option("--port") or WebSettings().port}
    first, processes = option("--metrics-port"), option("--concurrency") or 1
    assert first is not None, service
    return set(range(first, first + processes))  # worker process i listens on the port + i


def test_nothing_is_published_beyond_loopback() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert {"web-east", "web-west", "grafana", "prometheus"} <= published
    for name in published:
        for port in SERVICES[name]["ports"]:
            assert _expand(port).startswith("127.0.0.1:"), (name, port)
    for name in ("web-east", "web-west"):
        # Inside its container the page must listen beyond loopback to be mapped at all.
        assert _expand(SERVICES[name]["ports"][0]).endswith(f":{_listens_on(name).pop()}")


def test_every_scrape_target_is_a_service_port() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    scraped: dict[str, set[int]] = {}
    for job in jobs.values():
        for config in job["static_configs"]:
            for target in config["targets"]:
                host, port = target.split(":")
                scraped.setdefault(host, set()).add(int(port))
    facestream = {name for name, s in SERVICES.items() if s.get("image") == "facestream:local"}
    serving = {name for name in facestream if SERVICES[name].get("restart") != "no"}
    assert set(scraped) == serving  # every long-running process, and nothing else
    for host, ports in scraped.items():
        assert ports == _listens_on(host), host

    # The web page's /metrics token: one secret, mounted in Prometheus and read by the page.
    authorization = jobs["facestream-web"]["authorization"]
    assert authorization["type"] == "Bearer"
    secret = authorization["credentials_file"].removeprefix("/run/secrets/")
    assert secret in SERVICES["prometheus"]["secrets"]
    for name in ("web-east", "web-west"):
        environment = SERVICES[name]["environment"]
        assert environment["FACESTREAM_WEB__METRICS_TOKEN_FILE"] == f"/run/secrets/{secret}"
        assert not any(key in environment for key in ("FACESTREAM_WEB__TOKEN",
                                                      "FACESTREAM_WEB__METRICS_TOKEN"))  # fmt: skip
        web_fields = {
            key.removeprefix("FACESTREAM_WEB__").lower()
            for key in environment
            if key.startswith("FACESTREAM_WEB__")
        }
        assert web_fields <= set(WebSettings.model_fields), name
    assert _mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"


def test_grafana_finds_its_provisioning_dashboards_and_prometheus() -> None:
    mounts = _mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"  # Grafana's default
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "facestream.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert (COMPOSE / mounts[folder] / "facestream.json").is_file()
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    url = urlsplit(source["datasources"][0]["url"])
    prometheus_port = int(_expand(SERVICES["prometheus"]["ports"][0]).split(":")[-1])
    assert (url.hostname, url.port) == ("prometheus", prometheus_port)
    environment = SERVICES["grafana"]["environment"]
    password = environment["GF_SECURITY_ADMIN_PASSWORD__FILE"].removeprefix("/run/secrets/")
    assert password in SERVICES["grafana"]["secrets"]
    assert SPEC["secrets"][password]["file"] == "./secrets/grafana-admin.password"
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment  # only ever from the file


def test_every_secret_is_generated_or_written_by_the_readme(tmp_path: Path) -> None:
    deployment = load_settings(REPO / "configs" / "compose.yaml")
    write_secrets(plan_users(deployment, (7, 2), "group"), tmp_path)
    generated = {path.name for path in tmp_path.iterdir()}
    assert set(SERVICE_SECRETS) <= generated
    readme = (COMPOSE / "README.md").read_text()
    for name, spec in SPEC["secrets"].items():
        file = spec["file"].removeprefix("./secrets/")
        assert file in generated or f"compose/secrets/{file}" in readme, name
    for name, service in SERVICES.items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(SPEC["secrets"]), name
        text = " ".join(map(str, [*service.get("environment", {}).values(),
                                  *service.get("command", [])]))  # fmt: skip
        assert set(re.findall(r"/run/secrets/(\w+)", text)) <= mounted, name
        if mounted and "healthcheck" not in service:  # Redis reads its secret as root
            # The secret files are 0600: only their owner's uid can read them.
            assert service["user"].startswith("${FACESTREAM_UID"), name


@pytest.mark.parametrize("service", ["prometheus", "grafana"])
def test_data_folders_are_the_operators(service: str) -> None:
    """Bind-mounted data folders the README makes, never a volume owned by an image's uid."""
    readme = (COMPOSE / "README.md").read_text()
    data = [source for source in _mounts(service).values() if source.startswith("./data/")]
    assert len(data) == 1 and f"compose/{data[0].removeprefix('./')}" in readme
    for source in _mounts(service).values():
        if not source.startswith("./data/"):
            assert (COMPOSE / source).exists(), source
