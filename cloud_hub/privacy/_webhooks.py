"""Signed webhooks: tell a brand's backend about erasures and consent changes.

A brand registers one endpoint (``PUT /v1/brands/{brand}/webhook``, scope admin) and gets
a secret, shown once. Each event is queued durably in the state store when the action
that caused it finishes, then POSTed as JSON by a sender task that retries
with capped backoff until the endpoint answers 2xx: delivery is at least once and
survives hub restarts (``event_id`` lets the receiver drop repeats). Every request
carries ``TwinSync-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``;
receivers recompute it and reject stale timestamps (see :func:`verify_signature`).
Events name twins (pseudonyms), never a raw identifier.

The URL is the brand's choice, so where the hub may send is the operator's: every URL
passes the egress policy (cloud_hub.privacy._egress) when it is registered and again, pinned to
the checked addresses, at every delivery; redirects are never followed. The sender is a
background task of the hub and must outlive anything one round can raise (the state
store down, fds exhausted): such a round is logged, counted
(``twinsync_hub_webhooks_total{result="error"}``) and retried after a capped backoff.
Instances share the queue: each claims the events it sends (``StateStore.claim``: one
instance per event, the event due again if its sender died), so an event is sent by one
instance at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from cloud_hub._config import WebhookSettings
from cloud_hub._errors import CloudHubError
from cloud_hub._metrics import Metrics
from cloud_hub.store import StateStore, marks
from protocol import Clock, SystemClock, check_brand

from ._egress import EgressPolicy

__all__ = [
    "WebhookSender",
    "Webhooks",
    "post_signed",
    "send_forever",
    "sign",
    "verify_signature",
]

log = logging.getLogger("cloud_hub.webhooks")

_MAX_BACKOFF_S = 300.0
_LEASE_MS = 60_000  # longer than one delivery attempt may take (webhooks.timeout_s <= 30)
#: after a failed round (not a failed delivery): 1 s doubling to this
_MAX_ROUND_BACKOFF_S = 30.0


def sign(secret: str, body: bytes, at: int) -> str:
    """The ``TwinSync-Signature`` header value for ``body`` sent at ``at`` (Unix s)."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance_s: int = 300, clock: Clock | None = None
) -> bool:
    """What a receiver does: the signature matches and is at most ``tolerance_s`` old by
    the receiver's ``clock`` (the system clock by default)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        at = int(parts["t"])
    except (ValueError, KeyError):
        return False
    now_s = (clock or SystemClock()).now_ms() / 1000
    if abs(now_s - at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, at), header)


async def post_signed(
    session: aiohttp.ClientSession,
    egress: EgressPolicy,
    url: str,
    secret: str,
    data: bytes,
    clock: Clock,
) -> tuple[bool, str, str]:
    """POST ``data`` (JSON) to ``url`` signed with ``secret``, the egress policy checked
    again first; returns (delivered, why not, the metric result of a failure: ``retry``
    or ``refused``). Shared by every signed webhook the hub sends (privacy events,
    trigger events), so they are signed and confined alike."""
    headers = {
        "Content-Type": "application/json",
        "TwinSync-Signature": sign(secret, data, clock.now_ms() // 1000),
    }
    result = "retry"
    try:
        # Checked again at every send: the policy or the name's DNS may have changed
        # since registration (literal addresses never reach the connector's resolver).
        await egress.check_url_async(url)
        async with session.post(url, data=data, headers=headers, allow_redirects=False) as resp:
            ok = 200 <= resp.status < 300
            why = f"HTTP {resp.status}"
            if 300 <= resp.status < 400:
                why += " (a redirect; redirects are not followed: register the final URL)"
    except CloudHubError as exc:  # the egress policy refused it, or the name is unknown
        ok, why = False, str(exc)
        result = "refused" if exc.reason == "url_refused" else "retry"
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}"
    return ok, why, result


async def send_forever(
    round_: Callable[[aiohttp.ClientSession], Awaitable[object]],
    *,
    egress: EgressPolicy,
    metrics: Metrics,
    metric: str,
    what: str,
) -> None:
    """Run ``round_`` every second on one session confined by ``egress``, until
    cancelled: a round that fails is logged, counted (``metric{result="error"}``) and
    retried after 1 s doubling to 30 s. The loop of every webhook sender."""
    # The policy's connector resolves and checks every name at connect time; no
    # proxy from the environment (trust_env is off) could route around it.
    timeout = aiohttp.ClientTimeout(total=egress.settings.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=egress.connector()) as session:
        failures = 0
        while True:
            try:
                await round_(session)
                failures = 0
            except Exception as exc:  # CancelledError is no Exception: it propagates
                failures += 1
                delay = min(2.0 ** (failures - 1), _MAX_ROUND_BACKOFF_S)
                metrics.inc(metric, result="error")
                log.error(
                    "%s round failed (%s: %s); retrying in %.0fs",
                    what,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, CloudHubError | OSError),
                )
                await asyncio.sleep(delay)
                continue
            await asyncio.sleep(1.0)


class Webhooks:
    """Registered endpoints and the durable event queue."""

    def __init__(
        self, *, state: StateStore, clock: Clock, egress: EgressPolicy | None = None
    ) -> None:
        self._state = state
        self._clock = clock
        #: where endpoints may be (default: public https addresses only)
        self.egress = egress if egress is not None else EgressPolicy(WebhookSettings())

    def register(self, brand: str, url: str) -> str:
        """Set the brand's endpoint; returns the new signing secret (shown once).

        Raises RequestError (``bad_url``, ``url_refused``) when the egress policy
        refuses the URL or an address its host resolves to now (blocking DNS: call from a
        thread)."""
        self.egress.check_url(url)
        secret = secrets.token_urlsafe(32)
        row = {"brand": check_brand(brand), "url": url, "secret": secret}
        with self._state.transaction() as tx:
            tx.upsert("webhooks", [row], key=["brand"])
        return secret

    def endpoint(self, brand: str) -> dict[str, Any] | None:
        """The brand's endpoint (without the secret) and how many events wait."""
        with self._state.transaction(readonly=True) as tx:
            url = tx.execute("SELECT url FROM webhooks WHERE brand=?", (brand,)).scalar()
            waiting = tx.execute(
                "SELECT COUNT(*) FROM webhook_queue WHERE brand=?", (brand,)
            ).scalar()
        return None if url is None else {"url": url, "pending_events": int(waiting)}

    def emit(self, brand: str, event: str, data: dict[str, Any]) -> str | None:
        """Queue an event for the brand's endpoint (none registered: nothing to do)."""
        event_id = uuid.uuid4().hex
        body = {"event_id": event_id, "event": event, "brand": brand, **data}
        body["emitted_ms"] = self._clock.now_ms()
        row = {
            "brand": brand,
            "event_id": event_id,
            "body": json.dumps(body, sort_keys=True),
            "due_ms": body["emitted_ms"],
        }
        with self._state.transaction() as tx:
            if tx.execute("SELECT 1 FROM webhooks WHERE brand=?", (brand,)).fetchone() is None:
                return None
            tx.insert("webhook_queue", row)
        return event_id

    def due(self, now_ms: int, limit: int = 50) -> list[tuple[int, str, str, str, str, int]]:
        """Claim the events due now: (id, brand, url, secret, body, attempts).

        Claiming pushes each event's due time a lease into the future in the same
        transaction (``StateStore.claim``), so several hub instances never send one event
        at the same time; an instance that dies mid-send leaves the event to be sent again
        when the lease ends. Events of a brand without an endpoint wait (it may register
        one again).
        """
        claimed = self._state.claim(
            "webhook_queue",
            lease_column="due_ms",
            now_ms=now_ms,
            lease_ms=_LEASE_MS,
            columns=["brand", "body", "attempts"],
            where="brand IN (SELECT brand FROM webhooks)",
            limit=limit,
        )
        if not claimed:
            return []
        brands = sorted({str(r[1]) for r in claimed})
        with self._state.transaction(readonly=True) as tx:
            # Read after the claim (a secret replaced in between signs with the new one).
            endpoints = {
                str(b): (str(u), str(s))
                for b, u, s in tx.execute(
                    "SELECT brand, url, secret FROM webhooks "
                    f"WHERE brand IN ({marks(len(brands))})",
                    brands,
                )
            }
        out = []
        for queue_id, brand, body, attempts in claimed:
            if brand in endpoints:  # unregistered since the claim: due again after the lease
                url, secret = endpoints[brand]
                out.append((int(queue_id), str(brand), url, secret, str(body), int(attempts)))
        return out

    def delivered(self, queue_id: int) -> None:
        """Drop a delivered event."""
        with self._state.transaction() as tx:
            tx.execute("DELETE FROM webhook_queue WHERE id=?", (queue_id,))

    def retry_later(self, queue_id: int, attempts: int, now_ms: int) -> None:
        """Back off: 1 s doubling to 5 minutes."""
        delay = min(2.0**attempts, _MAX_BACKOFF_S)
        with self._state.transaction() as tx:
            tx.execute(
                "UPDATE webhook_queue SET attempts=?, due_ms=? WHERE id=?",
                (attempts + 1, now_ms + int(delay * 1000), queue_id),
            )


class WebhookSender:
    """Delivers queued events; :meth:`run` until cancelled (owned by the hub)."""

    def __init__(self, *, hooks: Webhooks, metrics: Metrics, clock: Clock) -> None:
        self._hooks = hooks
        self._egress = hooks.egress
        self._metrics = metrics
        self._clock = clock

    async def run(self) -> None:
        """Send what is due, every second (events are queued from any thread or instance,
        so polling the shared queue is what sees them all). A round that fails is logged,
        counted and retried after a backoff; only cancellation ends this."""
        await send_forever(
            self._round,
            egress=self._egress,
            metrics=self._metrics,
            metric="twinsync_hub_webhooks_total",
            what="webhook",
        )

    async def _round(self, session: aiohttp.ClientSession) -> None:
        now = self._clock.now_ms()
        for row in await asyncio.to_thread(self._hooks.due, now):
            await self._send(session, *row)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        queue_id: int,
        brand: str,
        url: str,
        secret: str,
        body: str,
        attempts: int,
    ) -> None:
        ok, why, result = await post_signed(
            session, self._egress, url, secret, body.encode(), self._clock
        )
        now = self._clock.now_ms()
        if ok:
            await asyncio.to_thread(self._hooks.delivered, queue_id)
            self._metrics.inc("twinsync_hub_webhooks_total", result="delivered")
        else:
            await asyncio.to_thread(self._hooks.retry_later, queue_id, attempts, now)
            self._metrics.inc("twinsync_hub_webhooks_total", result=result)
            log.warning("webhook to brand %s failed (%s); retrying", brand, why)
