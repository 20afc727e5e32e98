"""The one settings model: defaults < YAML file < FACESTREAM_* env < CLI flags, validated once."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from facestream.bridges import BridgeSettings
from facestream.ingest import CameraSettings, IngestSettings
from facestream.recognizer import (
    MatchSettings,
    ModelSettings,
    TrackSettings,
    VisitorSettings,
    WorkerSettings,
)
from facestream.schemas import FacestreamError, FrameLimits, keys
from facestream.web.settings import WebSettings

from .replication import ReplicaWait

__all__ = [
    "ClusterSettings",
    "ConfigError",
    "LogSettings",
    "NodeSettings",
    "RedisSettings",
    "Settings",
    "load_settings",
]


class ConfigError(FacestreamError, ValueError):
    """The configuration is invalid; the message names each bad field."""


def parsable_redis_url(url: str) -> str:
    """`url` if redis-py can use it; else a ValueError that never echoes it (a password)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    try:
        urlsplit(url).port  # noqa: B018  # raises on a host part that is not host:port
    except ValueError:
        raise ValueError(
            "cannot be parsed: percent-encode '/', '?', '#' and '%' in a password, or set "
            "redis.password / redis.password_file instead"
        ) from None
    return url


class RedisSettings(BaseModel):
    """How to reach the Redis node: URL, ACL user, password (field, file or URL), TLS."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// (TLS) URL.")
    username: str | None = Field(None, description="ACL user (overrides the URL's).")
    password: SecretStr | None = Field(
        None, description="Password (overrides the URL's); or FACESTREAM_REDIS__PASSWORD."
    )
    password_file: Path | None = Field(
        None, description="File holding the password (Docker/Kubernetes secrets); one line."
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify the server (TLS).")
    tls_cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    tls_key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    tls_check_hostname: bool = Field(
        True, description="Refuse a server certificate issued for another host name."
    )
    socket_timeout_s: float = Field(10.0, gt=0, le=300, description="Socket read timeout.")
    wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="After each frame sent and each result committed, WAIT for this many "
        "replicas to have it (0: do not wait). Closes most of what a failover can lose, at a "
        "latency cost (docs/topology.md).",
    )
    wait_timeout_ms: int = Field(
        100, ge=1, le=60_000, description="Longest a write waits for its replicas."
    )

    @field_validator("url")
    @classmethod
    def _parsable_url(cls, url: str) -> str:
        return parsable_redis_url(url)

    @model_validator(mode="after")
    def _one_password_source(self) -> RedisSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set redis.password or redis.password_file, not both")
        if self.password_file is not None and not self.password_file.is_file():
            raise ValueError(f"redis.password_file {self.password_file} is not a readable file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("redis.tls_cert_file and redis.tls_key_file go together")
        return self

    def replica_wait(self) -> ReplicaWait | None:
        """What to WAIT for after a write, or None when `wait_replicas` is 0."""
        if not self.wait_replicas:
            return None
        return ReplicaWait(self.wait_replicas, self.wait_timeout_ms)

    def secret(self) -> str | None:
        """The password to log in with (field, then file), or None to use the URL's."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            # One line: a trailing newline from `echo secret > file` is not part of it.
            return self.password_file.read_text().rstrip("\r\n")
        return None


class NodeSettings(BaseModel):
    """One independent Redis node and the camera groups whose keys live on it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="redis:// or rediss:// URL; logs in with `redis:`'s user/TLS.")
    groups: list[str] = Field(
        default_factory=list, description="Camera groups kept on this node (new frames come here)."
    )
    draining: list[str] = Field(
        default_factory=list,
        description="Groups moved to another node whose frames left here are still served and "
        "whose results are still read; drop them once `status` shows them drained.",
    )

    @field_validator("url")
    @classmethod
    def _parsable_url(cls, url: str) -> str:
        return parsable_redis_url(url)

    @field_validator("groups", "draining")
    @classmethod
    def _valid_groups(cls, groups: list[str]) -> list[str]:
        return [keys.validate_group(group) for group in groups]

    @model_validator(mode="after")
    def _something_to_hold(self) -> NodeSettings:
        if not self.groups and not self.draining:
            raise ValueError("a node needs groups (or groups draining from it)")
        return self


class ClusterSettings(BaseModel):
    """One Redis Cluster: where to find it; each group's `{G}` hash tag picks its slot."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(
        min_length=1, description="Seed nodes (any masters or replicas); the rest is discovered."
    )

    @field_validator("urls")
    @classmethod
    def _parsable_urls(cls, urls: list[str]) -> list[str]:
        return [parsable_redis_url(url) for url in urls]


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: pretty on a terminal, JSON otherwise."
    )


class Settings(BaseSettings):
    """Everything facestream can be told; each section belongs to the package that uses it."""

    model_config = SettingsConfigDict(
        env_prefix="FACESTREAM_", env_nested_delimiter="__", extra="forbid"
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    nodes: dict[str, NodeSettings] = Field(
        default_factory=dict,
        description="Independent Redis nodes by name, each with its camera groups (instead of "
        "redis.url, whose user, password and TLS settings every node uses).",
    )
    cluster: ClusterSettings | None = Field(
        None, description="A Redis Cluster instead of redis.url (same user, password, TLS)."
    )
    groups: list[str] = Field(
        default_factory=list, description="Camera groups a worker serves (empty: discover)."
    )
    limits: FrameLimits = Field(default_factory=FrameLimits)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    match: MatchSettings = Field(default_factory=MatchSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    visitors: VisitorSettings = Field(default_factory=VisitorSettings)
    tracks: TrackSettings = Field(default_factory=TrackSettings)
    cameras: list[CameraSettings] = Field(
        default_factory=list, description="Live cameras run by `facestream camera --config`."
    )
    log: LogSettings = Field(default_factory=LogSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    metrics_address: IPvAnyAddress = Field(
        IPv4Address("127.0.0.1"),
        description="Where --metrics-port listens: loopback unless a scraper on another host "
        "(a Prometheus container) must reach it.",
    )

    @field_validator("groups")
    @classmethod
    def _valid_groups(cls, groups: list[str]) -> list[str]:
        return [keys.validate_group(group) for group in groups]

    @model_validator(mode="after")
    def _one_topology(self) -> Settings:
        if self.nodes and self.cluster is not None:
            raise ValueError("set nodes or cluster, not both")
        homes: dict[str, str] = {}
        for name, node in self.nodes.items():
            keys.validate_group(name)  # node names follow the group-name rules
            for group in node.groups:
                if group in homes:
                    raise ValueError(f"group {group} is on two nodes: {homes[group]} and {name}")
                homes[group] = name
        for name, node in self.nodes.items():
            for group in node.draining:
                if homes.get(group, name) == name:
                    raise ValueError(
                        f"group {group} drains from node {name} but no other node's groups "
                        "list it: say where it moved"
                    )
        if self.nodes:
            unmapped = sorted({c.group for c in self.cameras} - homes.keys())
            if unmapped:
                raise ValueError(
                    f"camera group(s) {', '.join(unmapped)} are on no node: add them to a "
                    "node's groups"
                )
        return self

    @model_validator(mode="after")
    def _unique_cameras(self) -> Settings:
        ids = [camera.id for camera in self.cameras]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(duplicated)}")
        return self

    def cameras_by_group(self) -> dict[str, frozenset[str]]:
        """The configured camera ids of each group: a worker dead-letters frames from others."""
        ids: dict[str, set[str]] = {}
        for camera in self.cameras:
            ids.setdefault(camera.group, set()).add(camera.id)
        return {group: frozenset(cameras) for group, cameras in ids.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier wins: CLI flags (init), then environment, then the YAML file.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings once; `overrides` are nested dicts from CLI flags."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    try:
        return FileSettings(**_drop_none(overrides))
    except yaml.YAMLError as exc:  # its text names the line and column, over several lines
        where = " ".join(str(exc).split())
        raise ConfigError(f"config file {config_file} is not valid YAML: {where}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        source = f" (from {config_file}, FACESTREAM_* or flags)" if config_file else ""
        raise ConfigError(f"invalid configuration{source}: {problems}") from exc


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    """CLI flags left unset arrive as None; they must not override lower sources."""
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned
