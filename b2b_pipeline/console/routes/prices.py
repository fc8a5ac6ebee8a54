"""Price lookup for invoice disputes: the price an account saw for a SKU on a day or at a time.

Reads ``AuditStore.price_on`` (the price history of what was pushed to the portal and the lists
each account had): one row per quantity break and period, with the list it came from, the list
price, the account's discount and the price after it. A date means the whole UTC day (a price
that changed that day shows both, each with its hours); a date and time, that instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from b2b_pipeline.console.app import console_of, render
from b2b_pipeline.console.formatting import records

router = APIRouter()
MAX_FIELD = 64


def _when(text: str) -> date | datetime | None:
    text = text.strip()
    for pattern in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@router.get("/prices", response_class=HTMLResponse)
def prices(request: Request, account: str = "", sku: str = "", on: str = "") -> Response:
    account = account.strip()[:MAX_FIELD]
    sku = sku.strip()[:MAX_FIELD]
    on = on.strip()[:32]
    context: dict = {"account": account, "sku": sku, "on": on, "rows": None, "problem": None}
    if account or sku or on:
        when = _when(on) if on else datetime.now(UTC).date()
        if not account or not sku:
            context["problem"] = "Give both the account code and the SKU."
        elif when is None:
            context["problem"] = f"{on!r} is not a date: write it 2025-01-14 or 2025-01-14T15:30."
        else:
            store = console_of(request).store()
            found = store.price_on(account, sku, when)
            context["when"] = when
            context["rows"] = records(found)
            if found.empty:
                context["known_account"] = store.account_had_price_lists(account)
    return render(request, "prices.html", context)
