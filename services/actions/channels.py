"""Senders: email over real SMTP, SMS / push / Viber as JSON POSTs to provider
endpoints. Every send carries the command id as its idempotency key, so a provider
that saw a request time out on our side can drop our retry."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

import httpx

from services.actions.settings import ActionsSettings
from services.actions.templates import Rendered

IDEMPOTENCY_HEADER = "Idempotency-Key"


class SendError(RuntimeError):
    """A send that did not go through; ``permanent`` ones are not retried."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    command_id: str
    member_id: str
    channel: str
    template_id: str
    params: dict[str, str]
    rendered: Rendered


class Sender(Protocol):
    def send(self, message: Outgoing) -> str | None:
        """Deliver; return the provider's message id if it gives one; raise SendError."""
        ...

    def close(self) -> None: ...


class SmtpSender:
    """One SMTP connection per message: sends happen on several threads, and an
    ``smtplib.SMTP`` object is not safe to share between them."""

    def __init__(self, settings: ActionsSettings) -> None:
        self.settings = settings

    def send(self, message: Outgoing) -> str | None:
        s = self.settings
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = message.params.get("email") or s.email_recipient.format(
            member_id=message.member_id
        )
        mail["Subject"] = message.rendered.subject or message.template_id
        mail["Message-ID"] = make_msgid(idstring=message.command_id, domain="social-loyalty")
        mail["X-Idempotency-Key"] = message.command_id
        mail["X-Template-Id"] = message.template_id
        mail.set_content(message.rendered.body)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.send_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username and s.smtp_password:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError(f"smtp: recipient refused {exc.recipients}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise SendError(
                f"smtp {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"smtp: {exc!r}") from exc
        return str(mail["Message-ID"])

    def close(self) -> None:
        return None


class HttpSender:
    """A JSON POST per message to the channel's provider endpoint."""

    def __init__(self, settings: ActionsSettings, url: str) -> None:
        headers = {"User-Agent": "social-loyalty-actions"}
        if settings.provider_token:
            headers["Authorization"] = f"Bearer {settings.provider_token.get_secret_value()}"
        self.url = url
        self.client = httpx.Client(timeout=settings.send_timeout_s, headers=headers)

    def send(self, message: Outgoing) -> str | None:
        payload = {
            "command_id": message.command_id,
            "to": message.member_id,
            "channel": message.channel,
            "template_id": message.template_id,
            "subject": message.rendered.subject,
            "text": message.rendered.body,
        }
        try:
            response = self.client.post(
                self.url, json=payload, headers={IDEMPOTENCY_HEADER: message.command_id}
            )
        except httpx.HTTPError as exc:
            raise SendError(f"{message.channel}: {exc!r}") from exc
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                return None
            return str(body.get("id")) if isinstance(body, dict) and body.get("id") else None
        code = response.status_code
        permanent = 400 <= code < 500 and code not in (408, 425, 429)
        raise SendError(
            f"{message.channel}: HTTP {code} {response.text[:200]!r}", permanent=permanent
        )

    def close(self) -> None:
        self.client.close()


def senders(settings: ActionsSettings) -> dict[str, Sender]:
    return {
        "email": SmtpSender(settings),
        "sms": HttpSender(settings, settings.sms_url),
        "push": HttpSender(settings, settings.push_url),
        "viber": HttpSender(settings, settings.viber_url),
    }
