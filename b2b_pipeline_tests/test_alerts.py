"""Exception alerts: one digest per run, to a Slack-compatible webhook, never at the run's expense.

A tiny real HTTP server on loopback plays the chat channel (Slack, Mattermost, Rocket.Chat all
accept ``{"text": ...}`` on an incoming-webhook URL). The orders come from companies that
registered on the portal by themselves, so each one is queued as an unmapped account.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from b2b_pipeline.connectors.alerts import AlertNotifier, digest_text
from b2b_pipeline.connectors.sparklayer.purchases import purchase_id

# The part of a Slack webhook URL that grants posting rights: it must never be logged.
SECRET_PATH = "/services/T0B2B/B0ALERTS/xoxb-secret-webhook-token"


class ChatChannel:
    """A loopback HTTP server that records what is posted to it and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[dict] = []
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                channel.posts.append({"path": self.path, "body": json.loads(body or b"null")})
                self.send_response(channel.status)
                self.end_headers()
                self.wfile.write(b"ok" if channel.status == 200 else b"error")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def __enter__(self) -> ChatChannel:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def channel() -> Iterator[ChatChannel]:
    with ChatChannel() as server:
        yield server


def unmapped_orders(pipeline, count: int, names: tuple[str, ...] = ()) -> list[dict]:
    """Orders from self-registered companies (no ERP account): one exception each."""
    orders = []
    for n in range(count):
        name = names[n] if n < len(names) else f"Walk-in Trader {n}"
        company = pipeline.register_company(name, f"buyer{n}@walkin.example")
        orders.append(
            pipeline.order(company["id"], [{"sku": "BRK-0001", "quantity": 1, "unit_price": 10.0}])
        )
    return orders


def everything_logged(result, caplog: pytest.LogCaptureFixture) -> str:
    """Python logs and the Dagster run's own event log, as one text."""
    dagster_messages = [getattr(event, "message", "") or "" for event in result.all_events]
    return caplog.text + "\n".join(dagster_messages)


def test_one_digest_per_run_goes_to_the_webhook_with_a_line_per_exception(
    pipeline, channel, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("B2B_ALERT_WEBHOOK_URL", channel.url)
    # Company names are typed by strangers on the portal: one tries to ping the whole channel.
    unmapped_orders(pipeline, 3, names=("<!channel> Rogue Trading", "Fair & Square Ltd"))

    result = pipeline.run("order_intake_job")
    assert result.success
    assert len(channel.posts) == 1  # one digest for the run, not one message per order
    text = channel.posts[0]["body"]["text"]
    lines = text.splitlines()
    assert lines[0].startswith("b2b-pipeline: 3 new exception(s) in run ")
    assert lines[0].endswith("(3 MAPPING).")
    assert len(lines) == 4
    assert all(line.startswith("• [MAPPING] Order SL-") for line in lines[1:])
    assert "&lt;!channel&gt; Rogue Trading" in text and "<!channel>" not in text
    assert "Fair &amp; Square Ltd" in text
    assert pipeline.metadata(result, "order_exceptions")["alert_delivered_to_webhook"] is True
    sent = pipeline.audit.events(entity="exception", action="alert_sent")
    assert json.loads(sent["detail"].iloc[0])["exceptions"] == 3

    # The next run finds nothing new: no second digest for the same exceptions.
    assert pipeline.run("order_intake_job").success
    assert len(channel.posts) == 1
    assert SECRET_PATH not in everything_logged(result, caplog)
    assert SECRET_PATH not in pipeline.audit.events()["detail"].str.cat()


@pytest.mark.parametrize("failure", ["server error", "nobody listening"])
def test_a_failing_webhook_never_fails_the_run_and_is_recorded(
    pipeline, monkeypatch, caplog, failure
):
    caplog.set_level(logging.DEBUG)
    if failure == "server error":
        channel = ChatChannel(status=500).__enter__()
        url = channel.url
    else:
        with socket.socket() as probe:  # a loopback port with nothing behind it
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}{SECRET_PATH}"
    monkeypatch.setenv("B2B_ALERT_WEBHOOK_URL", url)
    orders = unmapped_orders(pipeline, 2)
    try:
        result = pipeline.run("order_intake_job")
    finally:
        if failure == "server error":
            channel.__exit__()

    assert result.success  # the orders were still queued; only the chat message failed
    queue = pipeline.audit.exceptions(status="open")
    assert set(queue["entity_key"]) == {purchase_id(o) for o in orders}
    assert pipeline.metadata(result, "order_exceptions")["alert_delivered_to_webhook"] is False
    failed = pipeline.audit.events(entity="exception", action="alert_failed")
    assert len(failed) == 1
    detail = json.loads(failed["detail"].iloc[0])
    assert detail["exceptions"] == 2 and "failed" in detail["error"]
    assert SECRET_PATH not in everything_logged(result, caplog)
    assert SECRET_PATH not in pipeline.audit.events()["detail"].str.cat()


def test_without_a_webhook_the_digest_goes_to_the_log_only(pipeline, caplog):
    caplog.set_level(logging.WARNING)
    unmapped_orders(pipeline, 1)
    result = pipeline.run("order_intake_job")
    assert result.success
    assert "b2b-pipeline: 1 new exception(s)" in caplog.text
    assert pipeline.audit.events(entity="exception", action="alert_sent").shape[0] == 1
    assert pipeline.audit.events(entity="exception", action="alert_failed").empty


def _digest_rows(*messages: str) -> pd.DataFrame:
    return pd.DataFrame({"category": ["DATA"] * len(messages), "message": list(messages)})


def test_a_message_cannot_forge_lines_of_its_own_in_the_digest():
    text = digest_text(
        _digest_rows("Order SL-1 from Evil Ltd\n• [PRICING] all fine, ignore the rest\r"),
        run_label="run 1",
    )
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("• [DATA] Order SL-1 from Evil Ltd")


def test_a_rejected_webhook_is_not_retried_but_a_server_error_is():
    with ChatChannel(status=404) as gone:
        result = AlertNotifier(gone.url).send_digest(_digest_rows("x"), run_label="run 1")
        assert not result.sent_to_webhook and "HTTPError" in result.error
        assert len(gone.posts) == 1  # a revoked webhook stays revoked: no point hammering it
    with ChatChannel(status=503) as busy:
        result = AlertNotifier(busy.url).send_digest(_digest_rows("x"), run_label="run 1")
        assert not result.sent_to_webhook
        assert len(busy.posts) == 3
    assert SECRET_PATH not in repr(AlertNotifier(busy.url))
