"""The exception queue and one exception, as the console shows them.

Reads go through the audit store's named reads (``exception_queue_page``,
``exception_status_counts``, ``exceptions_by_id``, ``exception_history``, ``events``): the page
is cut in SQL, so the first screen of a queue of 100,000 costs what a queue of 100 does.

Each row names the order the way the buyer and customer service do: the order number the buyer
sees (``SL-100003``) from order tracking, or, for an order too malformed to be tracked, from the
payload as received. The message is shown in full: its last sentence says what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.connectors.sparklayer.purchases import Purchase, visible_id
from b2b_pipeline.console.formatting import record as as_record
from b2b_pipeline.console.formatting import records
from b2b_pipeline.domain.exceptions import REASONS, Category

STATUSES = ("open", "approved", "resolved", "ignored")
PAGE_SIZE = 50
# "Older than" choices: label -> hours.
AGES: dict[str, tuple[str, float]] = {
    "1h": ("older than 1 hour", 1),
    "4h": ("older than 4 hours", 4),
    "1d": ("older than 1 day", 24),
    "3d": ("older than 3 days", 72),
    "7d": ("older than a week", 168),
    "30d": ("older than 30 days", 720),
}
MAX_ACCOUNT_LENGTH = 64


@dataclass(frozen=True)
class QueueFilters:
    status: str = "open"
    category: str | None = None
    reason: str | None = None
    account: str | None = None
    older_than: str | None = None
    page: int = 1

    @classmethod
    def from_query(cls, params: dict[str, str]) -> QueueFilters:
        """Filters from the query string; a value that is not one of the choices is dropped
        (a hand-edited URL shows the whole queue rather than an error)."""
        status = (params.get("status") or "open").lower()
        category = (params.get("category") or "").upper() or None
        reason = (params.get("reason") or "").upper() or None
        account = (params.get("account") or "").strip()[:MAX_ACCOUNT_LENGTH] or None
        older = params.get("older_than") or None
        try:
            page = max(int(params.get("page") or 1), 1)
        except ValueError:
            page = 1
        return cls(
            status=status if status in STATUSES else "open",
            category=category if category in {c.value for c in Category} else None,
            reason=reason if reason in REASONS else None,
            account=account,
            older_than=older if older in AGES else None,
            page=page,
        )

    @property
    def older_than_hours(self) -> float | None:
        return AGES[self.older_than][1] if self.older_than else None

    def query(self, **changes: Any) -> str:
        """This view's query string with ``changes`` (e.g. another tab or page)."""
        changed = replace(self, **changes)
        values = {
            "status": changed.status,
            "category": changed.category,
            "reason": changed.reason,
            "account": changed.account,
            "older_than": changed.older_than,
            "page": changed.page if changed.page > 1 else None,
        }
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True)
class QueuePage:
    filters: QueueFilters
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    page_size: int = PAGE_SIZE

    @property
    def total(self) -> int:
        return self.counts.get(self.filters.status, 0)

    @property
    def pages(self) -> int:
        return max((self.total + self.page_size - 1) // self.page_size, 1)

    @property
    def first_row(self) -> int:
        return (self.filters.page - 1) * self.page_size + 1 if self.rows else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.rows) - 1 if self.rows else 0


def _document(payload: Any) -> dict[str, Any] | None:
    try:
        document = json.loads(payload) if isinstance(payload, str) else payload
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def order_number_from_payload(payload: Any) -> str | None:
    """The buyer-visible number in a purchase as received (through the wire module)."""
    document = _document(payload)
    return visible_id(document) if document is not None else None


def po_number_from_payload(payload: Any) -> str | None:
    """The buyer's PO number (the portal's customer reference) in a purchase as received:
    what customer service is asked about. Shown as text, whatever the buyer typed."""
    document = _document(payload)
    if document is None:
        return None
    try:
        value = Purchase.model_validate(document).customer_reference
    except ValueError:  # pydantic's ValidationError: a payload too malformed to read
        return None
    if value is None or isinstance(value, bool) or not str(value).strip():
        return None
    return str(value)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = records(frame)
    for row in rows:
        if row.get("entity") == "order" and not row.get("order_number"):
            row["order_number"] = order_number_from_payload(row.get("payload"))
        row.pop("payload", None)  # the list shows the message; the detail page the payload
    return rows


def read_queue(store: AuditStore, filters: QueueFilters) -> QueuePage:
    counts = store.exception_status_counts(
        category=filters.category,
        reason_code=filters.reason,
        account_code=filters.account,
        older_than_hours=filters.older_than_hours,
    )
    frame = store.exception_queue_page(
        statuses=[filters.status],
        category=filters.category,
        reason_code=filters.reason,
        account_code=filters.account,
        older_than_hours=filters.older_than_hours,
        limit=PAGE_SIZE,
        offset=(filters.page - 1) * PAGE_SIZE,
    )
    return QueuePage(filters=filters, rows=_rows(frame), counts=counts)


@dataclass(frozen=True)
class ExceptionDetail:
    record: dict[str, Any]
    history: list[dict[str, Any]]
    # What the pipeline recorded about the record itself (an order's filtered/posted events).
    record_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> Any:
        return REASONS.get(str(self.record.get("reason_code")))

    @property
    def waiting(self) -> bool:
        return self.record.get("status") in ("open", "approved")

    @property
    def approved_by(self) -> str | None:
        """Who approved it last (the audit trail keeps the name; once the retry posts the
        order, the queue's ``resolved_by`` says "pipeline")."""
        names = [
            event["detail_fields"].get("by")
            for event in self.history
            if event.get("action") == "exception_approved"
        ]
        return names[-1] if names and names[-1] else None

    @property
    def decision(self) -> dict[str, Any]:
        raw = self.record.get("decision")
        if isinstance(raw, str) and raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                return {}
            return parsed if isinstance(parsed, dict) else {}
        return raw if isinstance(raw, dict) else {}


def _event_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = records(frame)
    for row in rows:
        try:
            detail = json.loads(row.get("detail") or "{}")
        except (TypeError, ValueError):
            detail = {}
        row["detail_fields"] = detail if isinstance(detail, dict) else {"detail": detail}
    return rows


def read_exception(store: AuditStore, exception_id: str) -> ExceptionDetail | None:
    found = store.exceptions_by_id([exception_id])
    if found.empty:
        return None
    record = as_record(found.iloc[0])
    if record.get("entity") == "order":
        if not record.get("order_number"):
            record["order_number"] = order_number_from_payload(record.get("payload"))
        record["po_number"] = po_number_from_payload(record.get("payload"))
    history = _event_rows(store.exception_history(exception_id))
    record_events: list[dict[str, Any]] = []
    if record.get("entity") == "order":
        record_events = _event_rows(
            store.events(entity="order", entity_key=str(record["entity_key"]))
        )
    return ExceptionDetail(record=record, history=history, record_events=record_events)
