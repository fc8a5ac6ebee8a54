"""Stock locations and stock levels (contract §4)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.handlers.common import MAX_BATCH_ITEMS, MAX_KEY_LENGTH, MAX_NAME_LENGTH
from b2b_pipeline.simulator.problems import already_exists, invalid_field
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import DEFAULT_LOCATION_EXTERNAL_ID
from b2b_pipeline.simulator.validation import (
    FieldErrors,
    require_array,
    require_object,
    text,
)

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal


def list_stock_locations(portal: Portal, request: Request) -> Response:
    with portal.state.lock:
        return Response(200, list(portal.state.stock_locations.values()))


def create_stock_location(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "stock location")
    errors = FieldErrors()
    name = text(errors, body, "name", required=True, max_len=MAX_NAME_LENGTH)
    external_id = text(errors, body, "external_id", required=True, max_len=MAX_KEY_LENGTH)
    errors.raise_if_any("stock location")
    assert name is not None and external_id is not None
    state = portal.state
    with portal.locks.hold(("stock-location", external_id)), state.lock:
        if external_id in state.location_by_external_id:
            raise already_exists("stock location", external_id, "external_id")
        location = state.add_stock_location(name, external_id)
    return Response(201, location)


def batch_update_stock(portal: Portal, request: Request) -> Response:
    """Overwrite each sent sku × location; a repeated pair or an unknown location is a 400."""
    body = require_array(request.body(), "stock update", MAX_BATCH_ITEMS)
    rows = _parse_stock_rows(body)
    state = portal.state
    keys = [("stock", f"{row['sku']}@{row['location']}") for row in rows]
    with portal.locks.hold(*keys), state.lock:
        errors = FieldErrors()
        location_ids = []
        for line, row in enumerate(rows):
            location_id = state.location_by_external_id.get(row["location"])
            if location_id is None:
                message = f"No stock location with external_id {row['location']!r}."
                errors.add("not-found", message, "stock_location_external_id", line=line)
            location_ids.append(location_id)
        errors.raise_if_any("stock update")
        for row, location_id in zip(rows, location_ids, strict=True):
            state.stock[(row["sku"], location_id)] = row["level"]
        state.changed()
    return Response(200, {"updated": len(rows)})


def _parse_stock_rows(body: list[Any]) -> list[dict[str, Any]]:
    errors = FieldErrors()
    rows = []
    seen: set[tuple[str, str]] = set()
    for line, item in enumerate(body):
        if type(item) is not dict:
            errors.add("invalid-type", "Each row must be an object.", "(row)", line=line)
            continue
        location = item.get("stock_location_external_id")
        sku = item.get("sku")
        level = item.get("stock_level")
        row_ok = True
        if type(location) is not str or not location:
            message = "stock_location_external_id is required."
            errors.add("required", message, "stock_location_external_id", line=line)
            row_ok = False
        if type(sku) is not str or not sku or len(sku) > MAX_KEY_LENGTH:
            message = f"sku must be a non-empty string of at most {MAX_KEY_LENGTH} characters."
            errors.add("invalid-value", message, "sku", line=line)
            row_ok = False
        if type(level) is not int:
            errors.add("invalid-type", "stock_level must be an integer.", "stock_level", line=line)
            row_ok = False
        min_level = item.get("min_stock_level")
        if min_level is not None and type(min_level) is not int:
            message = "min_stock_level must be an integer or null."
            errors.add("invalid-type", message, "min_stock_level", line=line)
            row_ok = False
        restock_date = item.get("restock_date")
        if restock_date is not None:
            try:
                restock_date = date.fromisoformat(restock_date).isoformat()
            except (TypeError, ValueError):
                message = "restock_date must be an ISO-8601 date or null."
                errors.add("invalid-value", message, "restock_date", line=line)
                row_ok = False
        if not row_ok:
            continue
        if (sku, location) in seen:
            message = f"SKU {sku!r} at {location!r} is sent twice in this call."
            errors.add("duplicate", message, "sku", line=line)
            continue
        seen.add((sku, location))
        rows.append(
            {
                "sku": sku,
                "location": location,
                "level": {
                    "stock_level": level,
                    "restock_date": restock_date,
                    "min_stock_level": min_level,
                },
            }
        )
    errors.raise_if_any("stock update")
    return rows


def batch_fetch_stock(portal: Portal, request: Request) -> Response:
    """Levels for the SKUs asked; only the ``default`` location unless all are asked for."""
    body = require_object(request.body(), "stock query")
    skus = body.get("skus")
    if not (isinstance(skus, list) and all(isinstance(sku, str) for sku in skus)):
        raise invalid_field("skus", "skus must be an array of SKUs.", "invalid-type")
    stock_filter = body.get("filter") or {}
    if not isinstance(stock_filter, dict):
        raise invalid_field("filter", "filter must be an object.", "invalid-type")
    all_locations = stock_filter.get("all_stock_locations") is True
    state = portal.state
    rows = []
    with state.lock:
        if all_locations:
            location_ids = list(state.stock_locations)
        else:
            location_ids = [state.location_by_external_id[DEFAULT_LOCATION_EXTERNAL_ID]]
        for sku in dict.fromkeys(skus):  # each SKU once, in the order asked
            for location_id in location_ids:
                level = state.stock.get((sku, location_id))
                if level is None:  # SKUs with no level are left out (contract §4)
                    continue
                location = state.stock_locations[location_id]
                rows.append(
                    {
                        "sku": sku,
                        "stock_location_id": location_id,
                        "stock_location_external_id": location["external_id"],
                        **level,
                    }
                )
    return Response(200, rows)
