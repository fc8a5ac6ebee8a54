"""Alerts for new exceptions: one digest per run, to the log always and to a webhook when set.

The webhook speaks the Slack incoming-webhook format (``{"text": ...}``), which Slack, Mattermost,
Rocket.Chat and Teams' Slack-compatible connectors accept. A failed delivery never fails the run:
it is logged and returned so the caller records it in the audit trail. The webhook URL is a
secret (it grants posting rights) and never appears in a log line or an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

# Enough lines for a person to act on without flooding a channel; the rest are in the queue.
MAX_LINES_IN_DIGEST = 20


@dataclass(frozen=True)
class DeliveryResult:
    sent_to_webhook: bool
    error: str | None = None


def digest_text(exceptions: pd.DataFrame, *, run_label: str) -> str:
    """The alert text: counts per category, then one line per exception, plainly worded."""
    counts = Counter(exceptions["category"])
    summary = ", ".join(f"{n} {category}" for category, n in sorted(counts.items()))
    lines = [f"b2b-pipeline: {len(exceptions)} new exception(s) in {run_label} ({summary})."]
    for row in exceptions.head(MAX_LINES_IN_DIGEST).itertuples(index=False):
        lines.append(f"• [{row.category}] {row.message}")
    if len(exceptions) > MAX_LINES_IN_DIGEST:
        lines.append(
            f"… and {len(exceptions) - MAX_LINES_IN_DIGEST} more: "
            "run `b2b-pipeline exceptions list` to see them all."
        )
    return "\n".join(lines)


class AlertNotifier:
    def __init__(self, webhook_url: str | None, *, timeout: float = 10.0) -> None:
        self._webhook_url = webhook_url
        self._timeout = timeout

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
            self._post({"text": text})
        except Exception as exc:  # a broken alert channel must not fail the sync
            # The exception text from requests may contain the URL: report only its kind.
            error = f"alert webhook delivery failed ({type(exc).__name__})"
            log.error("%s; the exceptions are still in the queue", error)
            return DeliveryResult(sent_to_webhook=False, error=error)
        return DeliveryResult(sent_to_webhook=True)

    @retry(
        retry=retry_if_exception_type(requests.RequestException),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(initial=0.5, max=5),
        reraise=True,
    )
    def _post(self, body: dict) -> None:
        response = requests.post(self._webhook_url, json=body, timeout=self._timeout)
        response.raise_for_status()
