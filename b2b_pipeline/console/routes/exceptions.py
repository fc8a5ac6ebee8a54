"""The exception queue, one exception, and the actions on them.

Every action calls ``flows.exception_actions`` (the functions the command line calls), with the
signed-in user as ``by``, so it replays the same rules and lands in ``audit_events`` under their
name; the page after it shows the action's own message. Approving records the decision and, as
the command line does by default, retries at once (untick "retry now" to retry later).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from b2b_pipeline.console.app import (
    can,
    console_of,
    csrf_checked,
    flash,
    render,
    require,
    safe_next,
)
from b2b_pipeline.console.queue import AGES, STATUSES, QueueFilters, read_exception, read_queue
from b2b_pipeline.console.roles import Permission, approval_permission
from b2b_pipeline.console.services import ConsoleBusy
from b2b_pipeline.domain.exceptions import REASONS, Category

if TYPE_CHECKING:
    from b2b_pipeline.connectors.audit.store import AuditStore
    from b2b_pipeline.flows.exception_actions import ActionResult

router = APIRouter()
log = logging.getLogger(__name__)

MAX_BULK = 500
MAX_TEXT = 2000
PRICING_REASONS = {"PRICE_MISMATCH", "NO_ERP_PRICE"}


def _message(result: Any, *, next_step: bool = True) -> dict[str, Any]:
    """An action's outcome for the page; ``next_step=False`` when the page does that step
    itself (an approval retried at once must not also say "Retry it to post it.")."""
    kind = "ok" if result.ok else ("error" if result.failed else "refused")
    if not result.ok and not result.refused and not result.failed:
        kind = "waiting"  # retried, still held: not an error, the message says why
    text = result.message
    if next_step and result.next_step and result.ok:
        text = f"{text} {result.next_step}"
    return {
        "kind": kind,
        "text": text,
        "exception_id": result.exception_id,
        "run_id": result.run_id,
    }


def _failed(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ConsoleBusy):
        return {"kind": "error", "text": str(exc)}
    log.exception("console action failed")
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    return {"kind": "error", "text": f"The action could not run: {text}"}


def _back(request: Request, default: str) -> RedirectResponse:
    return RedirectResponse(safe_next(default), status_code=303)


# -- pages -------------------------------------------------------------------------------------


@router.get("/exceptions", response_class=HTMLResponse)
def queue(request: Request) -> Response:
    filters = QueueFilters.from_query(dict(request.query_params))
    page = read_queue(console_of(request).store(), filters)
    return render(
        request,
        "queue.html",
        {
            "page": page,
            "filters": filters,
            "statuses": STATUSES,
            "categories": [c.value for c in Category],
            "reasons": sorted(REASONS.values(), key=lambda r: (r.category.value, r.code)),
            "ages": AGES,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


@router.get("/exceptions/{exception_id}", response_class=HTMLResponse)
def exception_page(request: Request, exception_id: str) -> Response:
    console = console_of(request)
    detail = read_exception(console.store(), exception_id)
    if detail is None:
        raise HTTPException(404, f"There is no exception {exception_id}.")
    record = detail.record
    comparison = None
    comparison_error = None
    if record.get("entity") == "order" and record.get("reason_code") in PRICING_REASONS:
        try:
            from b2b_pipeline.console.order_view import order_price_view

            with console.erp() as erp:
                comparison = order_price_view(
                    record.get("payload"),
                    record.get("account_code"),
                    erp=erp,
                    tolerance=console.mappings().price_tolerance,
                )
        except Exception as exc:  # the page still shows the exception when the ERP is down
            log.warning("ERP view of %s not available: %s", exception_id, type(exc).__name__)
            comparison_error = " ".join(str(exc).split())[:300] or type(exc).__name__
    approval = approval_permission(str(record.get("reason_code")))
    return render(
        request,
        "exception.html",
        {
            "detail": detail,
            "record": record,
            "comparison": comparison,
            "comparison_error": comparison_error,
            "may_approve": bool(approval and can(request, approval)),
            "approval": approval,
        },
    )


# -- actions -----------------------------------------------------------------------------------


def _record_or_404(request: Request, exception_id: str) -> dict[str, Any]:
    detail = read_exception(console_of(request).store(), exception_id)
    if detail is None:
        raise HTTPException(404, f"There is no exception {exception_id}.")
    return detail.record


@router.post("/exceptions/{exception_id}/approve", dependencies=[Depends(csrf_checked)])
def approve(
    request: Request,
    exception_id: str,
    accept: str = Form(default=""),
    account_code: str = Form(default="", max_length=64),
    post_on_hold: str = Form(default=""),
    note: str = Form(default="", max_length=MAX_TEXT),
    retry_now: str = Form(default=""),
) -> Response:
    from b2b_pipeline.flows.exception_actions import approve_exception, retry_exceptions

    console = console_of(request)
    record = _record_or_404(request, exception_id)
    # Not approvable at all: anyone who may act may hear the flow say how it is fixed instead.
    permission = approval_permission(str(record["reason_code"])) or Permission.RETRY
    user = require(request, permission)
    decision = {
        "accept": accept or None,
        "account_code": account_code or None,
        "post_on_hold": post_on_hold == "1",
    }
    messages = []
    store = console.store()
    try:
        if record["reason_code"] in ("UNMAPPED_ACCOUNT", "UNKNOWN_ACCOUNT"):
            with console.portal() as portal, console.erp() as erp:
                result = approve_exception(
                    store,
                    exception_id,
                    by=user.name,
                    decision=decision,
                    note=note or None,
                    portal=portal,
                    erp=erp,
                )
        else:
            result = approve_exception(
                store, exception_id, by=user.name, decision=decision, note=note or None
            )
        retrying = result.ok and retry_now == "1" and can(request, Permission.RETRY)
        messages.append(_message(result, next_step=not retrying))
        if retrying:
            for retried in retry_exceptions(
                store, [exception_id], by=user.name, run_job=console.run_job
            ):
                messages.append(_message(retried))
    except Exception as exc:
        messages.append(_failed(exc))
    flash(request, messages)
    return _back(request, f"/exceptions/{exception_id}")


@router.post("/exceptions/{exception_id}/retry", dependencies=[Depends(csrf_checked)])
def retry(request: Request, exception_id: str) -> Response:
    from b2b_pipeline.flows.exception_actions import retry_exceptions

    user = require(request, Permission.RETRY)
    console = console_of(request)
    try:
        results = retry_exceptions(
            console.store(), [exception_id], by=user.name, run_job=console.run_job
        )
        messages = [_message(r) for r in results]
    except Exception as exc:
        messages = [_failed(exc)]
    flash(request, messages)
    return _back(request, f"/exceptions/{exception_id}")


def _ignore(store: AuditStore, exception_id: str, by: str, words: str) -> ActionResult:
    from b2b_pipeline.flows.exception_actions import ignore_exception

    return ignore_exception(store, exception_id, by=by, reason=words)


def _resolve(store: AuditStore, exception_id: str, by: str, words: str) -> ActionResult:
    from b2b_pipeline.flows.exception_actions import resolve_exception

    return resolve_exception(store, exception_id, by=by, note=words)


@dataclass(frozen=True)
class _Closing:
    """A way of closing an exception by hand, with nothing replayed: who may, the form field
    the person's words come in, and the flow that records it."""

    permission: Permission
    field: str
    run: Callable[[AuditStore, str, str, str], ActionResult]


CLOSINGS = {
    "ignore": _Closing(Permission.IGNORE, "reason", _ignore),
    "resolve": _Closing(Permission.RESOLVE, "note", _resolve),
}


@router.post("/exceptions/{exception_id}/{closing}", dependencies=[Depends(csrf_checked)])
def close(
    request: Request,
    exception_id: str,
    closing: str,
    reason: str = Form(default="", max_length=MAX_TEXT),
    note: str = Form(default="", max_length=MAX_TEXT),
) -> Response:
    """Ignore (with a reason) or mark resolved (with a note): one action, other words and
    another permission. Registered after approve and retry, whose paths it also matches."""
    how = CLOSINGS.get(closing)
    if how is None:
        raise HTTPException(404, f"There is no action {closing!r} on an exception.")
    user = require(request, how.permission)
    words = reason if how.field == "reason" else note
    try:
        messages = [_message(how.run(console_of(request).store(), exception_id, user.name, words))]
    except Exception as exc:
        messages = [_failed(exc)]
    flash(request, messages)
    return _back(request, f"/exceptions/{exception_id}")


@router.post("/exceptions/retry", dependencies=[Depends(csrf_checked)])
async def bulk_retry(request: Request) -> Response:
    form = await request.form()
    ids = [str(value) for value in form.getlist("exception_id")][: MAX_BULK + 1]
    back = str(form.get("return_to") or "/exceptions")
    return await _bulk_retry(request, ids, back)


async def _bulk_retry(request: Request, ids: list[str], back: str) -> Response:
    from starlette.concurrency import run_in_threadpool

    from b2b_pipeline.flows.exception_actions import retry_exceptions, retry_summary

    user = require(request, Permission.RETRY)
    console = console_of(request)
    if not ids:
        flash(request, [{"kind": "refused", "text": "Tick the exceptions to retry first."}])
        return _back(request, back)
    if len(ids) > MAX_BULK:
        flash(
            request,
            [{"kind": "refused", "text": f"Retry at most {MAX_BULK} at a time (filter first)."}],
        )
        return _back(request, back)
    try:
        # The runs take seconds: off the event loop, like every other page.
        results = await run_in_threadpool(
            retry_exceptions, console.store(), ids, by=user.name, run_job=console.run_job
        )
        through = sum(1 for r in results if r.ok)
        messages = [
            {"kind": "ok" if through == len(results) else "waiting", "text": retry_summary(results)}
        ] + [_message(r) for r in results]
    except Exception as exc:
        messages = [_failed(exc)]
    flash(request, messages)
    return _back(request, back)
