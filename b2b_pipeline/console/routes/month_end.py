"""The month-end page, its downloads and the button that reconciles a month again."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from b2b_pipeline.console.app import console_of, csrf_checked, flash, render, require
from b2b_pipeline.console.month import (
    close_pack,
    months_offered,
    render_download,
    valid_month,
)
from b2b_pipeline.console.roles import Permission
from b2b_pipeline.console.services import ConsoleBusy
from b2b_pipeline.domain.reconciliation import month_of

router = APIRouter()
log = logging.getLogger(__name__)

DOWNLOADS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "summary.csv": "text/csv; charset=utf-8",
    "daily.csv": "text/csv; charset=utf-8",
}


def _month_or_404(month: str) -> str:
    chosen = valid_month(month)
    if chosen is None or chosen not in months_offered():
        first, last = months_offered()[-1], months_offered()[0]
        raise HTTPException(
            404, f"{month} cannot be reconciled: choose a month from {first} to {last} (UTC)."
        )
    return chosen


@router.get("/month-end", response_class=HTMLResponse)
def month_page(request: Request, month: str | None = None) -> Response:
    chosen = _month_or_404(month) if month else month_of(datetime.now(UTC))
    console = console_of(request)
    pack = close_pack(console.store(), chosen, console.settings.data_dir)
    return render(
        request,
        "month.html",
        {"pack": pack, "month": chosen, "months": months_offered()},
    )


@router.get("/month-end/{month}/close-pack-{name}")
def download(request: Request, month: str, name: str) -> Response:
    chosen = _month_or_404(month)
    prefix = f"{chosen}."
    kind = name[len(prefix) :] if name.startswith(prefix) else name.removeprefix(f"{chosen}-")
    if kind not in DOWNLOADS:
        raise HTTPException(404, "Choose the close pack as csv, json or html.")
    console = console_of(request)
    store = console.store()
    if store.reconciliation_outcomes(chosen).empty:
        raise HTTPException(404, f"{chosen} has not been reconciled yet: run it first.")
    body = render_download(store, chosen, console.settings.data_dir, kind)
    filename = f"close-pack-{chosen}.{kind}" if "." not in kind else f"close-pack-{chosen}-{kind}"
    return Response(
        body,
        media_type=DOWNLOADS[kind],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/month-end/{month}/reconcile", dependencies=[Depends(csrf_checked)])
def reconcile(request: Request, month: str) -> Response:
    from b2b_pipeline.console.month import save_run_pack
    from b2b_pipeline.flows.month_end import unexplained

    chosen = _month_or_404(month)
    user = require(request, Permission.RECONCILE)
    console = console_of(request)
    log.info("reconciliation of %s started from the console by %s", chosen, user.name)
    try:
        summary, result = console.reconcile(chosen)
    except ConsoleBusy as exc:
        flash(request, [{"kind": "error", "text": str(exc)}])
        return RedirectResponse(f"/month-end?month={chosen}", status_code=303)
    except Exception as exc:
        log.exception("console reconciliation failed")
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        flash(request, [{"kind": "error", "text": f"The reconciliation could not run: {text}"}])
        return RedirectResponse(f"/month-end?month={chosen}", status_code=303)
    if not summary.success or result is None:
        flash(
            request,
            [
                {
                    "kind": "error",
                    "text": f"The reconciliation of {chosen} failed: {summary.error}",
                    "run_id": summary.run_id,
                }
            ],
        )
        return RedirectResponse(f"/month-end?month={chosen}", status_code=303)
    save_run_pack(result, console.settings.data_dir)
    open_items = unexplained(result.lines)
    if open_items:
        # As the page writes money everywhere else: "36.00 GBP".
        money = ", ".join(f"{m:,.2f} {c}" for c, m in open_items.money.items())
        text = (
            f"Reconciled {chosen} ({len(result.lines)} orders): {open_items.count} "
            f"unexplained ({money})."
        )
        kind = "waiting"
    else:
        text = (
            f"Reconciled {chosen} ({len(result.lines)} orders): every order matched, is held "
            "in the queue with a reason, or is a difference finance approved."
        )
        kind = "ok"
    flash(request, [{"kind": kind, "text": text, "run_id": summary.run_id}])
    return RedirectResponse(f"/month-end?month={chosen}", status_code=303)
