"""Portal purchases (JSON) -> normalised orders and lines, with malformed purchases set aside.

A purchase that cannot be read safely (no lines, money that is not a number, an unknown currency,
a quantity that is not a positive whole number, no id or customer, control characters or an
oversized value in a PO number or a name) becomes one ``DATA`` exception (``MALFORMED_ORDER``)
holding the purchase as received and a reason naming each bad field; the other purchases go on.

Flattening the JSON is necessarily per purchase; it only copies values into column lists. Every
check is vectorised: values are parsed leniently into typed columns (a bad value becomes missing),
then the Pandera models (``domain/schemas/orders.py``) are validated lazily and each failure case
is mapped back to its purchase through the row index.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from b2b_pipeline.domain.exceptions import exception_frame, to_payload
from b2b_pipeline.domain.pricing import round_half_up
from b2b_pipeline.domain.schemas.master_data import KNOWN_CURRENCIES
from b2b_pipeline.domain.schemas.orders import MAX_TEXT_LENGTH, PortalOrderLines, PortalOrders

ORDER_COLUMNS = list(PortalOrders.to_schema().columns)
LINE_COLUMNS = list(PortalOrderLines.to_schema().columns)

# A money amount as the wire sends it: a plain decimal string ("12.50"). "12,50", "£12.50",
# "1e3" or "" are not amounts; a sign is parsed so that a negative amount is reported as such.
DECIMAL_AMOUNT = r"-?\d+(?:\.\d+)?"
NOT_AN_OBJECT = "the purchase is not a JSON object"
# Problems listed in one exception message; the payload holds the rest.
MAX_REASONS_IN_MESSAGE = 5

# Where each column comes from in the purchase JSON, for messages a reader can act on.
ORDER_FIELD_PATHS = {
    "portal_order_id": "id",
    "visible_id": "purchase_identifiers.visible",
    "status": "status",
    "type": "type",
    "customer_sparklayer_id": "customer_identifiers.sparklayer",
    "accounting_id": "customer accounting_id",
    "company_name": "customer company_name",
    "currency": "currency",
    "payment_method": "payment_method",
    "payment_status": "payment_status",
    "po_number": "po_number",
    "tax_exempt": "tax_exempt",
    "tax_number": "tax_number",
    "portal_net": "line_items total_net",
    "portal_tax": "line_items total_tax",
    "portal_gross": "calculated_total",
    "placed_at": "dates.placed_at",
    "updated_at": "dates.updated_at",
}
LINE_FIELD_PATHS = {
    "sku": "sku",
    "quantity": "quantity",
    "portal_unit_price": "unit_price",
    "portal_line_net": "line_total.total_net",
    "portal_line_tax": "line_total.total_tax",
}

AMOUNT = "an amount such as 12.50"
EXPECTED = {
    "portal_gross": AMOUNT,
    "portal_unit_price": AMOUNT,
    "portal_line_net": AMOUNT,
    "portal_line_tax": AMOUNT,
    "quantity": "a positive whole number",
    "updated_at": "an ISO-8601 time",
}


@dataclass(frozen=True)
class NormalisedOrders:
    """A batch of purchases, flattened.

    ``orders`` (``PortalOrders``) and ``lines`` (``PortalOrderLines``) hold only well-formed
    purchases; ``malformed`` holds one exception row per purchase that was not
    (:func:`b2b_pipeline.domain.exceptions.exception_frame` shape).
    """

    orders: pd.DataFrame
    lines: pd.DataFrame
    malformed: pd.DataFrame


# --- flattening (per purchase) -----------------------------------------------------------------


def _child(record: Any, key: str) -> Any:
    """``record[key]`` when the record is an object; a wrong shape reads as missing."""
    return record.get(key) if isinstance(record, dict) else None


def _amount(money: Any) -> Any:
    """The ``number`` of a money object, or the value itself when the wire sent a bare number."""
    return money.get("number") if isinstance(money, dict) else money


def _text(value: Any) -> str | None:
    """Identifiers and free text as strings; numbers are accepted as their decimal form."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float):
        return str(value)
    return None


class _Columns:
    """Column lists filled while walking the purchases (one append per value, no frames yet)."""

    def __init__(self, names: list[str]) -> None:
        self.data: dict[str, list[Any]] = {name: [] for name in names}

    def append(self, **values: Any) -> None:
        for name, column in self.data.items():
            column.append(values.get(name))

    def frame(self) -> pd.DataFrame:
        # Values stay Python objects (a column of ints with one 2.5 must not become floats, and
        # an empty batch still has text columns); positions and line numbers are integers.
        return pd.DataFrame(
            {
                name: pd.Series(
                    values, dtype="int64" if name in ("position", "line_no") else object
                )
                for name, values in self.data.items()
            }
        )


def _flatten(
    purchases: list[dict],
) -> tuple[_Columns, _Columns, dict[int, list[str]]]:
    orders = _Columns(
        [
            "position",
            "portal_order_id",
            "visible_id",
            "status",
            "type",
            "customer_sparklayer_id",
            "currency",
            "payment_method",
            "payment_status",
            "po_number",
            "tax_exempt",
            "tax_number",
            "portal_gross_raw",
            "placed_at_raw",
            "updated_at_raw",
            "payload",
        ]
    )
    lines = _Columns(
        [
            "position",
            "line_no",
            "sku",
            "quantity_raw",
            "unit_price_raw",
            "line_net_raw",
            "line_tax_raw",
        ]
    )
    structural: dict[int, list[str]] = defaultdict(list)
    for position, purchase in enumerate(purchases):
        if not isinstance(purchase, dict):
            structural[position].append(NOT_AN_OBJECT)
            orders.append(position=position, payload=to_payload(purchase))
            continue
        identifiers = purchase.get("purchase_identifiers")
        dates = purchase.get("dates")
        tax_exempt = purchase.get("tax_exempt")
        if tax_exempt is not None and not isinstance(tax_exempt, bool):
            structural[position].append(f"tax_exempt is {_shown(tax_exempt)}, not true or false")
        orders.append(
            position=position,
            portal_order_id=_text(purchase.get("id")),
            visible_id=_text(_child(identifiers, "visible")),
            status=_text(purchase.get("status")),
            type=_text(purchase.get("type")),
            customer_sparklayer_id=_text(
                _child(purchase.get("customer_identifiers"), "sparklayer")
            ),
            currency=purchase.get("currency")
            if isinstance(purchase.get("currency"), str)
            else None,
            payment_method=_text(purchase.get("payment_method")),
            payment_status=_text(purchase.get("payment_status")),
            po_number=_text(purchase.get("po_number")),
            tax_exempt=tax_exempt if isinstance(tax_exempt, bool) else None,
            tax_number=_text(purchase.get("tax_number")),
            portal_gross_raw=_amount(purchase.get("calculated_total")),
            placed_at_raw=_child(dates, "placed_at"),
            updated_at_raw=_child(dates, "updated_at"),
            payload=to_payload(purchase),
        )
        items = purchase.get("line_items")
        if not isinstance(items, list) or not items:
            structural[position].append("line_items is missing or empty")
            continue
        for line_no, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                structural[position].append(f"line {line_no} is not a JSON object")
                continue
            totals = item.get("line_total")
            lines.append(
                position=position,
                line_no=line_no,
                sku=_text(item.get("sku")),
                quantity_raw=item.get("quantity"),
                unit_price_raw=_amount(item.get("unit_price")),
                line_net_raw=_amount(_child(totals, "total_net")),
                line_tax_raw=_amount(_child(totals, "total_tax")),
            )
    return orders, lines, structural


# --- parsing (vectorised) ------------------------------------------------------------------------


def _parse_amounts(raw: pd.Series) -> pd.Series:
    """Decimal strings (or bare JSON numbers) -> float64; anything else -> NaN."""
    text = raw.astype(str)
    # bool is excluded: str(True) does not match; None -> "None" does not match either.
    readable = text.str.fullmatch(DECIMAL_AMOUNT)
    return pd.to_numeric(text.where(readable), errors="coerce").astype("float64")


def _parse_quantities(raw: pd.Series) -> pd.Series:
    """JSON integers -> float64 (whole); a string, a fraction, a bool or missing -> NaN.

    Kept as float so a bad value is a missing value of its row: pandera then reports it against
    the row, where an int64 cast would fail the whole column.
    """
    is_integer = raw.map(type).isin([int]).to_numpy()
    values = np.full(len(raw), np.nan)
    values[is_integer] = raw[is_integer].astype("float64").to_numpy()
    return pd.Series(values, index=raw.index)


def _parse_timestamps(raw: pd.Series) -> pd.Series:
    text = raw.where(raw.map(type).isin([str]).to_numpy())
    return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")


def _join_customers(orders: pd.DataFrame, portal_customers: pd.DataFrame) -> pd.DataFrame:
    """Add the portal company's accounting_id and name; fill tax_exempt from it when unset."""
    customers = (
        portal_customers.reindex(columns=["id", "accounting_id", "company_name", "tax_exempt"])
        .dropna(subset=["id"])
        .drop_duplicates("id", keep="last")
        .set_index("id")
    )
    by_customer = orders["customer_sparklayer_id"]
    # A blank accounting_id is no mapping at all.
    orders["accounting_id"] = by_customer.map(customers["accounting_id"]).map(
        lambda value: value.strip() or None if isinstance(value, str) else None
    )
    orders["company_name"] = by_customer.map(customers["company_name"]).astype(object)
    # The purchase's own flag is what the checkout applied; the customer's fills a gap.
    own = orders["tax_exempt"].to_numpy(dtype=object)
    fallback = by_customer.map(customers["tax_exempt"]).to_numpy(dtype=object)
    orders["tax_exempt"] = pd.Series(np.where(pd.isna(own), fallback, own), index=orders.index).eq(
        True
    )
    return orders


# --- validation ----------------------------------------------------------------------------------


def _order_schema(currencies: Collection[str]) -> pa.DataFrameSchema:
    """PortalOrders, with the currency list of this run (the ERP's, or the supported set)."""
    schema = PortalOrders.to_schema()
    return schema.update_column(
        "currency",
        checks=[
            *schema.columns["currency"].checks,
            pa.Check.isin(sorted(currencies), name="known_currency"),
        ],
    )


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Pandera failure cases with a row index (index, column, check, failure_case)."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["index"].notna()]
        return cases[["index", "column", "check", "failure_case"]]
    return pd.DataFrame(columns=["index", "column", "check", "failure_case"])


def _shown(value: Any) -> str:
    """A raw value for a message: short, and escaped (control characters shown as \\u00..)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and len(value) > 40:
        return f"a {len(value):,}-character text"
    return json.dumps(value, ensure_ascii=True, default=str)


def _problem(field: str, check: str, raw: Any, expected: str | None = None) -> str:
    """One failure case in words; ``expected`` says what a readable value looks like."""
    if check == "not_nullable" or check.startswith("coerce_dtype") or check.startswith("dtype"):
        if raw is None:
            return f"{field} is missing"
        return f"{field} {_shown(raw)} is not {expected or 'readable'}"
    if check.startswith("str_length"):
        shown = f"{len(raw):,} characters" if isinstance(raw, str) else "too long"
        if isinstance(raw, str) and not raw:
            return f"{field} is empty"
        return f"{field} is {shown} long (at most {MAX_TEXT_LENGTH})"
    if check == "no_control_characters":
        return f"{field} contains control or invisible characters ({_shown(raw)})"
    if check.startswith("str_matches"):
        return f"{field} {_shown(raw)} is not a 3-letter currency code"
    if check.startswith("isin"):
        return f"{field} {_shown(raw)} is not a currency the ERP trades in"
    if check.startswith("greater_than("):
        return f"{field} {_shown(raw)} is not a positive whole number"
    if check.startswith("greater_than_or_equal_to"):
        return f"{field} {_shown(raw)} is negative"
    return f"{field} {_shown(raw)} fails the check {check}"


def _order_problems(
    failures: pd.DataFrame, raw_values: dict[str, pd.Series], positions: pd.Series
) -> list[tuple[int, str]]:
    problems = []
    for index, column, check in (
        failures[["index", "column", "check"]]
        .drop_duplicates(["index", "column"])
        .itertuples(index=False)
    ):
        raw = raw_values[column].at[index] if column in raw_values else None
        field = ORDER_FIELD_PATHS.get(column, column)
        problem = _problem(field, check, raw, EXPECTED.get(column))
        problems.append((int(positions.at[index]), problem))
    return problems


def _line_problems(
    failures: pd.DataFrame, raw_values: dict[str, pd.Series], lines: pd.DataFrame
) -> list[tuple[int, str]]:
    problems = []
    # A line's order id is the order's: a missing one is reported once, on the order.
    failures = failures[failures["column"] != "portal_order_id"]
    for index, column, check in (
        failures[["index", "column", "check"]]
        .drop_duplicates(["index", "column"])
        .itertuples(index=False)
    ):
        raw = raw_values[column].at[index] if column in raw_values else None
        field = f"line {lines.at[index, 'line_no']} {LINE_FIELD_PATHS.get(column, column)}"
        problem = _problem(field, check, raw, EXPECTED.get(column))
        problems.append((int(lines.at[index, "position"]), problem))
    return problems


def _fallback_key(payload: str) -> str:
    """A stable key for a purchase with no id, so its exception is not opened twice."""
    return "unidentified-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def _malformed_rows(orders: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    rows = []
    for position, problems in sorted(reasons.items()):
        order = orders.loc[position]
        key = order["portal_order_id"] or _fallback_key(order["payload"])
        label = order["visible_id"] or order["portal_order_id"] or "with no id"
        listed = "; ".join(problems[:MAX_REASONS_IN_MESSAGE])
        more = len(problems) - MAX_REASONS_IN_MESSAGE
        if more > 0:
            listed += f"; and {more} more problem{'s' if more > 1 else ''}"
        rows.append(
            {
                "entity": "order",
                "entity_key": key,
                "account_code": order.get("accounting_id"),
                "reason_code": "MALFORMED_ORDER",
                "message": (
                    f"Portal order {label} could not be read and was not sent to the ERP: "
                    f"{listed}. Correct the order in the portal, then retry it."
                ),
                "payload": order["payload"],
            }
        )
    return exception_frame(rows)


def normalise_purchases(
    purchases: list[dict],
    portal_customers: pd.DataFrame,
    *,
    currencies: Collection[str] | None = None,
) -> NormalisedOrders:
    """Flatten portal purchases into orders and lines; set malformed purchases aside.

    Args:
        purchases: purchase JSON objects as the portal serves them.
        portal_customers: portal customers (``id``, ``accounting_id``, ``company_name``,
            ``tax_exempt``); gives each order its ERP account mapping.
        currencies: the currencies the ERP trades in (e.g. its price lists' currencies); a
            purchase in any other is malformed. Default: the project's supported set.

    When one purchase id appears twice in the batch, the later (newer) version is kept.
    """
    currencies = set(currencies) if currencies is not None else set(KNOWN_CURRENCIES)
    order_cols, line_cols, reasons = _flatten(purchases)
    # Not even a JSON object: that one reason says it all; its empty columns would add noise.
    unreadable = {position for position, found in reasons.items() if found == [NOT_AN_OBJECT]}
    orders = order_cols.frame().set_index("position", drop=False)
    orders.index.name = None
    lines = line_cols.frame()

    # Older versions of a purchase listed twice: only the newest counts.
    older = orders["portal_order_id"].notna() & orders["portal_order_id"].duplicated(keep="last")
    for position in orders.index[older]:
        reasons.pop(position, None)
    orders = orders[~older]
    lines = lines[lines["position"].isin(orders.index)].reset_index(drop=True)

    # Parse leniently (a bad value becomes missing), keeping raw values for the messages.
    orders["portal_gross"] = _parse_amounts(orders["portal_gross_raw"])
    orders["placed_at"] = _parse_timestamps(orders["placed_at_raw"])
    orders["updated_at"] = _parse_timestamps(orders["updated_at_raw"])
    lines["quantity"] = _parse_quantities(lines["quantity_raw"])
    lines["portal_unit_price"] = _parse_amounts(lines["unit_price_raw"])
    lines["portal_line_net"] = _parse_amounts(lines["line_net_raw"])
    lines["portal_line_tax"] = _parse_amounts(lines["line_tax_raw"])
    lines["portal_order_id"] = lines["position"].map(orders["portal_order_id"])
    # Order net and tax are the sums of its lines (min_count: an order with no line stays NaN).
    sums = lines.groupby("position")[["portal_line_net", "portal_line_tax"]].sum(min_count=1)
    orders["portal_net"] = round_half_up(orders["position"].map(sums["portal_line_net"]), 2)
    orders["portal_tax"] = round_half_up(orders["position"].map(sums["portal_line_tax"]), 2)
    orders = _join_customers(orders, portal_customers)

    bad_placed = orders["placed_at"].isna() & orders["placed_at_raw"].notna()
    for position, raw in orders.loc[bad_placed, "placed_at_raw"].items():
        reasons[position].append(f"dates.placed_at {_shown(raw)} is not an ISO-8601 time")

    raw_order_values = {
        "portal_gross": orders["portal_gross_raw"],
        "updated_at": orders["updated_at_raw"],
        **{c: orders[c] for c in ("company_name", "po_number", "tax_number", "currency")},
    }
    raw_line_values = {
        "quantity": lines["quantity_raw"],
        "portal_unit_price": lines["unit_price_raw"],
        "portal_line_net": lines["line_net_raw"],
        "portal_line_tax": lines["line_tax_raw"],
        "sku": lines["sku"],
    }
    order_failures = _failures(_order_schema(currencies), orders[ORDER_COLUMNS])
    line_failures = _failures(PortalOrderLines.to_schema(), lines[LINE_COLUMNS])
    for position, problem in [
        *_order_problems(order_failures, raw_order_values, orders["position"]),
        *_line_problems(line_failures, raw_line_values, lines),
    ]:
        if position not in unreadable:
            reasons[position].append(problem)

    malformed = _malformed_rows(orders, reasons)
    bad_positions = list(reasons)
    clean_orders = orders[~orders["position"].isin(bad_positions)][ORDER_COLUMNS]
    clean_lines = lines[~lines["position"].isin(bad_positions)][LINE_COLUMNS]
    clean_lines = clean_lines.astype({"quantity": "int64", "line_no": "int64"})
    return NormalisedOrders(
        orders=clean_orders.reset_index(drop=True),
        lines=clean_lines.reset_index(drop=True),
        malformed=malformed,
    )
