"""Alerts for new exceptions: one digest per run, to the log always and to a webhook when set.

The webhook speaks the Slack incoming-webhook format (``{"text": ...}``), which Slack, Mattermost,
Rocket.Chat and Teams' Slack-compatible connectors accept. A failed delivery never fails the run:
it is logged and returned so the caller records it in the audit trail. The webhook URL is a
secret (it grants posting rights) and never appears in a log line or an error.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd
import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

# Enough lines for a person to act on without flooding a channel; the rest are in the queue.
MAX_LINES_IN_DIGEST = 20


# urllib3 logs every request line at DEBUG ("POST /services/T0/B0/secret HTTP/1.1" 200), and a
# webhook URL's path is its secret. Its loggers get a filter that masks registered webhook paths.
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")
WEBHOOK_MASK = "<alert webhook>"


class _MaskWebhooks(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, url: str) -> None:
        parts = urlsplit(url)
        secret = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.secrets.update(s for s in (url, secret) if len(s) > 1)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        # Longest first, so the whole URL is masked before its path alone.
        hits = sorted((s for s in self.secrets if s in message), key=len, reverse=True)
        if hits:
            for secret in hits:
                message = message.replace(secret, WEBHOOK_MASK)
            record.msg, record.args = message, None
        return True


_MASK = _MaskWebhooks()
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_MASK)


@dataclass(frozen=True)
class DeliveryResult:
    sent_to_webhook: bool
    error: str | None = None


# Control characters (newlines included) in a message: a company name typed by a stranger on the
# portal must not start a line of its own that looks like another alert.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_line(text: object) -> str:
    return _CONTROL.sub(" ", str(text)).strip()


def slack_escaped(text: str) -> str:
    """Slack's required escaping: ``<`` ``>`` ``&`` are markup (``<!channel>`` pings everyone,
    ``<http://x|click>`` disguises a link), so text from the portal is shown, never obeyed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def digest_text(exceptions: pd.DataFrame, *, run_label: str) -> str:
    """The alert text: counts per category, then one line per exception, plainly worded."""
    counts = Counter(exceptions["category"])
    summary = ", ".join(f"{n} {category}" for category, n in sorted(counts.items()))
    lines = [f"b2b-pipeline: {len(exceptions)} new exception(s) in {run_label} ({summary})."]
    for row in exceptions.head(MAX_LINES_IN_DIGEST).itertuples(index=False):
        lines.append(f"• [{row.category}] {_one_line(row.message)}")
    if len(exceptions) > MAX_LINES_IN_DIGEST:
        lines.append(
            f"… and {len(exceptions) - MAX_LINES_IN_DIGEST} more: "
            "run `b2b-pipeline exceptions list` to see them all."
        )
    return "\n".join(lines)


def _worth_retrying(error: BaseException) -> bool:
    """Connection trouble, 5xx and 429 may pass; a 4xx (a revoked or mistyped webhook) will not."""
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 500
        return status >= 500 or status == 429
    return isinstance(error, requests.RequestException)


class AlertNotifier:
    def __init__(self, webhook_url: str | None, *, timeout: float = 10.0) -> None:
        self._webhook_url = webhook_url
        self._timeout = timeout
        if webhook_url:
            _MASK.add(webhook_url)

    def __repr__(self) -> str:
        return f"AlertNotifier(webhook={'set' if self._webhook_url else 'unset'})"

    def send_digest(self, exceptions: pd.DataFrame, *, run_label: str) -> DeliveryResult:
        """Send one digest for the run's new exceptions; never raises."""
        if exceptions.empty:
            return DeliveryResult(sent_to_webhook=False)
        text = digest_text(exceptions, run_label=run_label)
        log.warning("%s", text)
        if not self._webhook_url:
            return DeliveryResult(sent_to_webhook=False)
        try:
            self._post(self._webhook_url, {"text": slack_escaped(text)})
        except Exception as exc:  # a broken alert channel must not fail the sync
            # The exception text from requests may contain the URL: report only its kind.
            error = f"alert webhook delivery failed ({type(exc).__name__})"
            log.error("%s; the exceptions are still in the queue", error)
            return DeliveryResult(sent_to_webhook=False, error=error)
        return DeliveryResult(sent_to_webhook=True)

    @retry(
        retry=retry_if_exception(_worth_retrying),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.5, max=5),
        reraise=True,
    )
    def _post(self, webhook_url: str, body: dict[str, str]) -> None:
        response = requests.post(webhook_url, json=body, timeout=self._timeout)
        response.raise_for_status()
