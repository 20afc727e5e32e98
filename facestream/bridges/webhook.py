"""`facestream bridge webhook URL`: each event POSTed as JSON, HMAC-signed, retried, dead-lettered.

The signature is `X-Facestream-Signature: sha256=<hex>`, the HMAC-SHA256 with the shared secret
of `<X-Facestream-Timestamp>.<X-Facestream-Delivery>.<body>`: the timestamp (Unix seconds) and
the delivery id are signed too, so a receiver that refuses old timestamps and delivery ids it
has already handled cannot be fed a recorded request again, nor one relabelled as another
delivery (docs/bridges.md shows the receiver's checks). Connection errors, timeouts, 408, 429
and 5xx are retried with exponential back-off (Retry-After honoured); any other answer but
2xx, or running out of attempts, puts the event on `fs:{G}:events:dead` with the reason.
Either way the event is then acknowledged.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import threading
import time
from datetime import UTC, datetime
from functools import partial

import httpx
import redis
import structlog

from facestream import __version__
from facestream.client import DeliveredEvent, EventSubscriber
from facestream.health import Probe
from facestream.ingest.outages import Outages
from facestream.schemas import redact

from . import metrics
from .base import Pump, Sources, bridge_subscriber, dead_letter, run_pumps
from .settings import BridgeError, BridgeSettings, WebhookSettings

__all__ = ["WebhookSender", "read_secret", "run_webhook_bridge", "sign", "webhook_url"]

log = structlog.get_logger("bridge.webhook")

SIGNATURE_HEADER = "X-Facestream-Signature"
TIMESTAMP_HEADER = "X-Facestream-Timestamp"
DELIVERY_HEADER = "X-Facestream-Delivery"


def sign(secret: bytes, timestamp: str, delivery: str, body: bytes) -> str:
    """The signature header's value for `body` of `delivery`, sent at `timestamp` (Unix
    seconds, as text)."""
    signed = b".".join((timestamp.encode(), delivery.encode(), body))
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def read_secret(settings: WebhookSettings) -> bytes:
    """The signing secret: one line of `secret_file` (a trailing newline is not part of it)."""
    if settings.secret_file is None:
        raise BridgeError(
            "the webhook bridge signs every request: pass --secret-file FILE "
            "(or set bridge.webhook.secret_file)"
        )
    secret = settings.secret_file.read_bytes().rstrip(b"\r\n")
    if len(secret) < 16:
        raise BridgeError(
            f"the secret in {settings.secret_file} is {len(secret)} bytes; use at least 16 "
            "(e.g. `openssl rand -hex 32 > FILE`)"
        )
    return secret


class WebhookSender:
    """POSTs one event at a time until the receiver takes it, refuses it, or attempts run out."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        settings: WebhookSettings,
        probe: Probe,
        stop: threading.Event,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            shown = redact(url)[:100]  # a URL may carry a token: never echo it
            raise BridgeError(f"webhook URL {shown!r} must start with http:// or https://")
        self.url = url
        self.secret = secret
        self.settings = settings
        self.probe = probe
        self.stop = stop
        self.bridge = f"webhook/{settings.name}"
        token = settings.token_file.read_text().strip() if settings.token_file else ""
        self._authorization = {"Authorization": f"Bearer {token}"} if token else {}
        # Redirects are not followed: a signed POST should not be re-sent somewhere else.
        self.http = httpx.Client(timeout=settings.timeout_s, follow_redirects=False)

    def deliver(self, event: DeliveredEvent) -> tuple[bool, str | None, int]:
        """(delivered, why not, attempts); (False, None, n) when stopped before an outcome."""
        body = event.to_json()
        for attempt in range(1, self.settings.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = self.http.post(
                    self.url, content=body, headers=self._headers(event, body)
                )
            except httpx.TransportError as exc:  # connect, read, write, pool errors and timeouts
                why = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._healthy(True, None)
                    return True, None, attempt
                why = f"HTTP {status}: {response.text[:200]}"
                if not (status in (408, 429) or status >= 500):
                    self._healthy(True, None)
                    return False, f"refused by the receiver, {why}", attempt
                retry_after = _retry_after(response.headers.get("Retry-After"))
            self._healthy(False, why)
            metrics.ATTEMPTS_FAILED.labels(self.bridge).inc()
            if attempt == self.settings.max_attempts:
                break
            delay = min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_cap_s)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.max_retry_after_s))
            log.warning(
                "webhook delivery failed, will retry",
                entry_id=event.entry_id, attempt=attempt, retry_in_s=round(delay, 2), error=why,
            )  # fmt: skip
            if self.stop.wait(delay):
                return False, None, attempt
        return False, f"gave up after {self.settings.max_attempts} attempts, last: {why}", attempt

    def close(self) -> None:
        self.http.close()

    def _headers(self, event: DeliveredEvent, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        # The same for every attempt: the receiver's key to drop a duplicate.
        delivery = f"{event.group}/{event.entry_id}"
        return {
            "Content-Type": "application/json",
            "User-Agent": f"facestream/{__version__}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, delivery, body),
            DELIVERY_HEADER: delivery,
            "X-Facestream-Event": event.type,
            **self._authorization,
        }

    def _healthy(self, answered: bool, why: str | None) -> None:
        metrics.CONNECTED.labels(self.bridge).set(1 if answered else 0)
        self.probe.set_ready(None if answered else f"webhook failing: {why}")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def webhook_url(settings: WebhookSettings, given: str | None) -> str:
    """The receiver's URL: the command line's, else `url`, else one line of `url_file` (a URL
    may carry a token, and a command line is visible to every local user in `ps`)."""
    if given:
        return given
    if settings.url is not None:
        return settings.url.get_secret_value()
    if settings.url_file is not None:
        return settings.url_file.read_text().strip()
    raise BridgeError(
        "no webhook URL: pass it, or set bridge.webhook.url_file (or bridge.webhook.url)"
    )


def run_webhook_bridge(
    sources: Sources,
    url: str,
    settings: BridgeSettings,
    probe: Probe,
    stop: threading.Event,
    *,
    from_start: bool = False,
) -> None:
    """POST every event to `url` until `stop`; one subscriber per source (node)."""
    sender = WebhookSender(url, read_secret(settings.webhook), settings.webhook, probe, stop)
    outages = Outages(stop, f"{sender.bridge} dead letters")

    def deliver(client: redis.Redis, event: DeliveredEvent) -> bool:
        delivered, why, attempts = sender.deliver(event)
        if delivered:
            metrics.DELIVERED.labels(sender.bridge, "event").inc()
        elif why is None:
            return False  # stopped while retrying: it stays pending, sent again after a restart
        else:
            dead_letter(client, event, sender.bridge, why, attempts, outages)
        return True

    pumps = [
        Pump(
            f"events@{name}",
            bridge_subscriber(
                EventSubscriber, client, groups, "webhook", settings, from_start, probe
            ),
            partial(deliver, client),
        )
        for name, (client, groups) in sources.items()
    ]
    probe.set_ready(None)
    try:
        run_pumps(pumps, stop)
    finally:
        sender.close()
        log.info("webhook bridge stopped", bridge=sender.bridge)
