"""Sync log (contract §6): the pipeline reports each master-data sync's health here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.handlers.common import MAX_KEY_LENGTH, MAX_SYNC_LOG_ERRORS
from b2b_pipeline.simulator.problems import invalid_field, not_found
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.validation import FieldErrors, iso_datetime, require_object, text

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal


def get_sync_log(portal: Portal, request: Request) -> Response:
    key = _key(request)
    with portal.state.lock:
        entry = portal.state.sync_logs.get(key)
    if entry is None:
        raise not_found("sync log", key)
    return Response(200, entry)


def put_sync_log(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "sync log")
    errors = FieldErrors()
    started = iso_datetime(errors, body, "started_full_sync")
    last = iso_datetime(errors, body, "last_full_sync")
    succeeded = body.get("last_full_sync_succeeded")
    if succeeded is not None and type(succeeded) is not bool:
        errors.add(
            "invalid-type",
            "last_full_sync_succeeded must be true, false or null.",
            "last_full_sync_succeeded",
        )
    sync_errors = _sync_errors(errors, body.get("errors"))
    errors.raise_if_any("sync log")
    key = _key(request)
    state = portal.state
    with portal.locks.hold(("sync-log", key)), state.lock:
        entry = {
            "integration": request.params["integration"],
            "data_type": request.params["data_type"],
            "started_full_sync": started,
            "last_full_sync": last,
            "last_full_sync_succeeded": succeeded,
            "errors": sync_errors,
            "updated_at": state.changed(),
        }
        state.sync_logs[key] = entry
    return Response(200, entry)


def _sync_errors(errors: FieldErrors, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("invalid-type", "errors must be an array.", "errors")
        return []
    if len(raw) > MAX_SYNC_LOG_ERRORS:
        errors.add(
            "too-many-items",
            f"At most {MAX_SYNC_LOG_ERRORS} errors per sync log; got {len(raw)}.",
            "errors",
        )
        return []
    seen: set[str] = set()
    clean = []
    for i, item in enumerate(raw):
        prefix = f"errors[{i}]."
        if not isinstance(item, dict):
            errors.add("invalid-type", "Each error must be an object.", f"errors[{i}]")
            continue
        external_id = text(
            errors, item, "external_id", required=True, max_len=MAX_KEY_LENGTH, prefix=prefix
        )
        message = text(errors, item, "message", required=True, max_len=2000, prefix=prefix)
        url = text(errors, item, "external_url", max_len=2000, prefix=prefix)
        if external_id is None:
            continue
        if external_id in seen:
            errors.add(
                "duplicate", f"external_id {external_id!r} appears twice.", prefix + "external_id"
            )
            continue
        seen.add(external_id)
        entry = {"external_id": external_id, "message": message}
        if url is not None:
            entry["external_url"] = url
        clean.append(entry)
    return clean


def _key(request: Request) -> str:
    integration, data_type = request.params["integration"], request.params["data_type"]
    if len(integration) > MAX_KEY_LENGTH or len(data_type) > MAX_KEY_LENGTH:
        raise invalid_field("integration", "integration and data_type are at most 64 characters.")
    return f"{integration}/{data_type}"
