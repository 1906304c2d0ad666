"""Delivering notifications from the outbox (``store.outbox``) to webhooks and mail servers.

The reaper's leader delivers what is due every tick, beside maintenance (``Reaper``); a worker that
stops makes one last bounded attempt, so that the outcome of the job it just finished goes out;
anything else can run :meth:`Notifier.run`. A pass claims a few due rows for a lease (twice the
slowest target's timeout, which bounds each attempt), sends them at once, and marks each
delivered, or due again after exponential backoff with full jitter (at least what a ``Retry-After``
asks, at most the target's ``backoff_cap``), or failed after the target's ``max_attempts``. A sender
that dies mid-pass leaves its rows to the next one when their lease runs out: nothing is lost, and a
receiver may see a message twice (the body's ``id`` says which).

Sending is ``Sender``, a small stack: ``send`` (resolve the target, pick the channel) -> ``_post`` (a
webhook: render, sign, POST) or ``_mail`` (an email over SMTP, in a thread). Both raise ``NotifyError``
with a message that never contains a webhook's path (chat webhooks carry their token there).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from helixcode import __version__
from helixcode.config import NotifySettings, mask_target, url_channel
from helixcode.domain.backoff import retry_delay
from helixcode.domain.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    email_text,
    render,
    sign,
    subject,
)
from helixcode.errors import ConfigError, NotifyError, StoreError
from helixcode.store.store import Store

__all__ = ["Notifier", "Sender", "Sent"]

log = logging.getLogger(__name__)

#: Rows one pass claims, all of them sent at once.
BATCH = 8


@dataclass
class Sent:
    """What one pass did with the rows it claimed."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.retrying + self.failed

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Notifier:
    """Delivers the outbox rows of this process's enabled ``[notify.*]`` targets."""

    def __init__(
        self,
        store: Store,
        *,
        batch: int = BATCH,
        lease: float | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.store = store
        self.targets = {name: t for name, t in store.settings.notify.items() if t.enabled}
        self.batch = batch
        # Every row of a pass is sent at once, and an attempt ends within its target's timeout: so a
        # lease of twice the slowest timeout outlasts any attempt, and a dead sender's rows are due soon.
        slowest = max((t.timeout for t in self.targets.values()), default=10.0)
        self.lease = lease if lease is not None else 2 * slowest + 5.0
        self.sender = sender or Sender()

    async def aclose(self) -> None:
        await self.sender.aclose()

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- passes -----------------------------------------------------------------------------------

    async def deliver_due(self) -> Sent:
        """One pass: claim up to ``batch`` due rows and deliver them. Database trouble is logged and
        ends the pass (the rows it had claimed are retried when their lease runs out)."""
        sent = Sent()
        try:
            claimed = await self.store.claim_notifications(list(self.targets), self.batch, self.lease)
        except StoreError as exc:
            log.warning("notifications: database error: %s", exc, extra={"action": "notify.db_error"})
            return sent
        outcomes = await asyncio.gather(*(self._deliver(d, sent) for d in claimed), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, StoreError):
                log.warning("notifications: database error: %s", outcome, extra={"action": "notify.db_error"})
            elif isinstance(outcome, BaseException):
                raise outcome
        return sent

    async def flush(self) -> Sent:
        """Passes until nothing is due (a stopping worker's last; bound it with ``asyncio.timeout``)."""
        total = Sent()
        while True:
            sent = await self.deliver_due()
            for key, value in sent.to_dict().items():
                setattr(total, key, getattr(total, key) + value)
            if sent.total < self.batch:
                return total

    async def run(self, interval: float = 1.0) -> None:
        """Deliver for ever: a pass, then another at once while there is a backlog, else a pause."""
        try:
            while True:
                sent = await self.deliver_due()
                if sent.total < self.batch:
                    await asyncio.sleep(interval)
        finally:
            await self.aclose()

    async def _deliver(self, delivery: Delivery, sent: Sent) -> None:
        target = self.targets[delivery.target]
        fields: dict[str, Any] = {
            "target": delivery.target,
            "notification": delivery.id,
            "event": delivery.kind,
            "attempt": delivery.attempt,
        }
        if job := delivery.payload.get("job"):
            fields["job"] = job.get("id")
        try:
            await self.sender.send(delivery.target, target, delivery.body())
        except NotifyError as exc:
            await self._undelivered(delivery, target, exc, sent, fields)
            return
        except Exception as exc:  # a fault of ours: retried, and given up in time like any other
            log.exception("notification %s: unexpected error", delivery.id, extra={"action": "notify.bug"})
            await self._undelivered(delivery, target, NotifyError(repr(exc)), sent, fields)
            return
        await self.store.mark_delivered(delivery)
        sent.delivered += 1
        log.info(
            "notification %s delivered to %s",
            delivery.kind,
            delivery.target,
            extra={"action": "notify.delivered", **fields},
        )

    async def _undelivered(
        self,
        delivery: Delivery,
        target: NotifySettings,
        exc: NotifyError,
        sent: Sent,
        fields: dict[str, Any],
    ) -> None:
        if delivery.attempt >= target.max_attempts:
            await self.store.mark_undelivered(delivery, str(exc), None)
            sent.failed += 1
            log.error(
                "notification %s to %s given up after %d attempts: %s",
                delivery.kind,
                delivery.target,
                delivery.attempt,
                exc,
                extra={"action": "notify.failed", **fields, "error": str(exc)},
            )
            return
        delay = retry_delay(delivery.attempt, target.backoff_base, target.backoff_cap)
        if exc.retry_after is not None:
            delay = min(max(delay, exc.retry_after), target.backoff_cap)
        await self.store.mark_undelivered(delivery, str(exc), delay)
        sent.retrying += 1
        log.warning(
            "notification %s to %s not delivered (retry in %.1fs): %s",
            delivery.kind,
            delivery.target,
            delay,
            exc,
            extra={"action": "notify.retry", **fields, "delay": round(delay, 3), "error": str(exc)},
        )


class Sender:
    """Sends one message to one target, with no outbox (``helix notify test`` uses it alone)."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, name: str, target: NotifySettings, body: Mapping[str, Any]) -> None:
        """Deliver ``body`` now; ``NotifyError`` if the target did not take it."""
        try:
            url = target.target_url()
            secret = target.secret_key()
            password = target.smtp_password()
        except ConfigError as exc:
            raise NotifyError(f"[notify.{name}] {exc}") from exc
        try:
            # The whole attempt, not each step of it: the row's lease must outlast it.
            async with asyncio.timeout(target.timeout):
                if url_channel(url) == "email":
                    await self._mail(url, target, body, password)
                else:
                    await self._post(url, target, body, secret)
        except TimeoutError as exc:
            raise NotifyError(f"{mask_target(url)}: no answer within {target.timeout:g}s") from exc

    async def _post(
        self, url: str, target: NotifySettings, body: Mapping[str, Any], secret: bytes | None
    ) -> None:
        content = render(target.format, body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"helixcode/{__version__}",
            "X-Helix-Event": str(body.get("event")),
            "X-Helix-Delivery": str(body.get("id")),
        }
        if secret is not None:
            now = int(time.time())
            headers[TIMESTAMP_HEADER] = str(now)
            headers[SIGNATURE_HEADER] = sign(secret, now, content)
        where = mask_target(url)
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        try:
            response = await self._client.post(url, content=content, headers=headers, timeout=target.timeout)
        except httpx.HTTPError as exc:
            detail = str(exc).replace(url, where) or type(exc).__name__
            raise NotifyError(f"{where}: {detail}") from exc
        if not response.is_success:
            text = " ".join(response.text.split())[:200]
            raise NotifyError(
                f"{where} answered {response.status_code}" + (f": {text}" if text else ""),
                retry_after=_retry_after(response),
            )

    async def _mail(
        self, url: str, target: NotifySettings, body: Mapping[str, Any], password: str | None
    ) -> None:
        message = EmailMessage()
        message["Subject"] = subject(body)
        message["From"] = target.sender
        message["To"] = ", ".join(target.to)
        # The same for every attempt, so that a mail reader can fold a duplicate away.
        message["Message-ID"] = f"<helix-notification-{body.get('id')}@helixcode>"
        message["X-Helix-Event"] = str(body.get("event"))
        message.set_content(email_text(body))
        try:
            await asyncio.to_thread(_smtp_send, url, message, target.timeout, password)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{mask_target(url)}: {type(exc).__name__}: {exc}") from exc


def _smtp_send(url: str, message: EmailMessage, timeout: float, password: str | None) -> None:
    """Send over SMTP: ``smtps://`` is TLS from the start; ``smtp://`` upgrades with STARTTLS when the
    server offers it. A user in the URL logs in with ``password_env``'s password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    tls = parts.scheme == "smtps"
    port = parts.port or (465 if tls else 25)
    context = ssl.create_default_context()
    smtp = (
        smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        if tls
        else smtplib.SMTP(host, port, timeout=timeout)
    )
    with smtp:
        if not tls:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
        if parts.username:
            secret = password if password is not None else unquote(parts.password or "")
            smtp.login(unquote(parts.username), secret)
        smtp.send_message(message)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (its HTTP-date form is ignored: backoff applies)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
