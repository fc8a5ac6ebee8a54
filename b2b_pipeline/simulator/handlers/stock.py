"""Stock locations and stock levels (contract §4).

``batch-update-stock`` overwrites each (location, SKU) pair sent and answers 204; a location is
named by ``stock_location_external_id`` or ``stock_location_id``; a pair sent twice in one call
or an unknown location is a 400 that applies nothing. ``batch-fetch-stock`` answers
``[{"sku", "stock_levels": [{"stock_location_id", "stock_location_external_id", "stock_level",
"restock_date", "min_stock_level"}]}]``: only the ``default`` location unless
``filter.all_stock_locations``; a SKU with no level at those locations is left out.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from b2b_pipeline.simulator.handlers.common import MAX_BATCH_ITEMS, MAX_KEY_LENGTH, MAX_NAME_LENGTH
from b2b_pipeline.simulator.problems import already_exists, invalid_field
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.state import DEFAULT_LOCATION_EXTERNAL_ID, PortalState
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
    with state.lock:
        location_ids = _location_ids(state, rows)
    keys = [
        ("stock", f"{row['sku']}@{location_id}")
        for row, location_id in zip(rows, location_ids, strict=True)
    ]
    with portal.locks.hold(*keys), state.lock:
        location_ids = _location_ids(state, rows)  # a reset may have run meanwhile
        for row, location_id in zip(rows, location_ids, strict=True):
            state.stock[(row["sku"], location_id)] = row["level"]
        state.changed()
    return Response(204)


def _location_ids(state: PortalState, rows: list[dict[str, Any]]) -> list[str]:
    """Each row's location id; a 400 naming every row whose location is unknown or repeated."""
    errors = FieldErrors()
    location_ids: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows):
        kind, value = row["location"]
        if kind == "stock_location_id":
            location_id = value if value in state.stock_locations else None
        else:
            location_id = state.location_by_external_id.get(value)
        if location_id is None:
            errors.add("not-found", f"No stock location with {kind} {value!r}.", kind, line=line)
            location_ids.append("")
            continue
        if (row["sku"], location_id) in seen:
            message = f"SKU {row['sku']!r} at location {value!r} is sent twice in this call."
            errors.add("duplicate", message, "sku", line=line)
        seen.add((row["sku"], location_id))
        location_ids.append(location_id)
    errors.raise_if_any("stock update")
    return location_ids


def _parse_stock_rows(body: list[Any]) -> list[dict[str, Any]]:
    errors = FieldErrors()
    rows = []
    for line, item in enumerate(body):
        if type(item) is not dict:
            errors.add("invalid-type", "Each row must be an object.", "(row)", line=line)
            continue
        location = _row_location(item)
        sku = item.get("sku")
        level = item.get("stock_level")
        row_ok = True
        if location is None:
            message = "stock_location_external_id or stock_location_id is required."
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


def _row_location(item: dict[str, Any]) -> tuple[str, str] | None:
    """``(key, value)`` of the row's location: its external id, else its SparkLayer id."""
    for key in ("stock_location_external_id", "stock_location_id"):
        value = item.get(key)
        if type(value) is str and value:
            return key, value
    return None


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
            levels = []
            for location_id in location_ids:
                level = state.stock.get((sku, location_id))
                if level is None:
                    continue
                levels.append(
                    {
                        "stock_location_id": location_id,
                        "stock_location_external_id": state.stock_locations[location_id][
                            "external_id"
                        ],
                        **level,
                    }
                )
            if levels:  # SKUs with no level are left out (contract §4)
                rows.append({"sku": sku, "stock_levels": levels})
    return Response(200, rows)
