"""The `bridge:` config section: where `facestream bridge mqtt|webhook` delivers events."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from facestream.schemas import FacestreamError

__all__ = ["BridgeError", "BridgeSettings", "MqttSettings", "WebhookSettings"]

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class BridgeError(FacestreamError):
    """A bridge cannot start as configured (no secret, a bad URL); the message says the fix."""


class MqttSettings(BaseModel):
    """`facestream bridge mqtt`: the broker, the bridge's name, TLS and credentials."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    name: str = Field(
        "default",
        pattern=_NAME,
        description="This bridge's name: its consumer group (bridge-mqtt-<name>), MQTT client "
        "id and availability topic.",
    )
    topic_prefix: str = Field(
        "facestream", min_length=1, description="First level of every topic (no wildcards)."
    )
    results: bool = Field(
        False, description="Also publish every result (<prefix>/<group>/<camera>/result)."
    )
    username: str | None = Field(None, description="Broker user name.")
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: bool = Field(False, description="Connect with TLS (verifying the broker's certificate).")
    tls_ca_file: Path | None = Field(None, description="CA bundle (default: the system's).")
    tls_cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    tls_key_file: Path | None = Field(None, description="Client key (mutual TLS).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval.")
    stop_wait_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="On SIGTERM, wait this long for the broker to confirm "
        "the event in flight (unconfirmed, it is sent again after a restart).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if any(c in self.topic_prefix for c in "#+\0"):
            raise ValueError("bridge.mqtt.topic_prefix must not contain '#', '+' or NUL")
        if self.password_file is not None and not self.password_file.is_file():
            raise ValueError(f"bridge.mqtt.password_file {self.password_file} is not a file")
        if self.password_file is not None and self.username is None:
            raise ValueError("bridge.mqtt.password_file needs bridge.mqtt.username")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("bridge.mqtt.tls_cert_file and tls_key_file go together")
        return self


class WebhookSettings(BaseModel):
    """`facestream bridge webhook`: signing secret, timeouts, the retry budget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", pattern=_NAME, description="Consumer group bridge-webhook-<name>.")
    url: SecretStr | None = Field(
        None,
        description="http(s):// URL that receives each event, when not given on the command "
        "line (a secret: it may carry a token; FACESTREAM_BRIDGE__WEBHOOK__URL).",
    )
    url_file: Path | None = Field(
        None, description="File holding that URL (one line): kept out of `ps` and the config."
    )
    token_file: Path | None = Field(
        None,
        description="File holding a bearer token the receiver wants (one line), sent as "
        "`Authorization: Bearer <token>` with every POST.",
    )
    secret_file: Path | None = Field(
        None, description="File holding the HMAC-SHA256 signing secret (one line)."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connect/read timeout per POST.")
    max_attempts: int = Field(
        12, ge=1, le=100, description="POSTs per event before it is dead-lettered."
    )
    backoff_s: float = Field(0.5, gt=0, le=60, description="First retry delay (then doubled).")
    backoff_cap_s: float = Field(60.0, gt=0, le=3600, description="Longest retry delay.")
    max_retry_after_s: float = Field(
        300.0, gt=0, le=86400, description="Longest Retry-After honoured."
    )

    @model_validator(mode="after")
    def _readable_secret(self) -> WebhookSettings:
        for name in ("secret_file", "url_file", "token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"bridge.webhook.{name} {path} is not a file")
        if self.url is not None and self.url_file is not None:
            raise ValueError("set bridge.webhook.url or bridge.webhook.url_file, not both")
        return self


class BridgeSettings(BaseModel):
    """Bridges from the events stream to other systems (docs/bridges.md)."""

    model_config = ConfigDict(extra="forbid")

    claim_idle_ms: int = Field(
        30_000, ge=100, description="Take over events another bridge of the same name left."
    )
    block_ms: int = Field(1000, ge=10, le=60_000, description="Longest wait per stream read.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
