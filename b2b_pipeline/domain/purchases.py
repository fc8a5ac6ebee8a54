"""Portal purchases, read into columns by the wire module -> normalised orders and lines.

The SparkLayer connector (``connectors/sparklayer/purchases.py``) owns the purchase document: it
turns a batch of purchases into :class:`RawPurchases`, raw values in columns plus what is
structurally wrong with each purchase. This module decides, vectorised, which purchases can be
read safely. One that cannot (no lines, money that is not a number, an unknown currency, a
quantity that is not a positive whole number, no id, customer or type, control characters or an
oversized value in a PO number or a name) becomes one ``DATA`` exception (``MALFORMED_ORDER``)
holding the purchase as received and a reason naming each bad field; one whose line totals do
not add up to its checkout total becomes ``TOTALS_DO_NOT_ADD_UP``. The other purchases go on.

Values are parsed leniently into typed columns (a bad value becomes missing), then the Pandera
models (``domain/schemas/orders.py``) are validated lazily and each failure case is mapped back to
its purchase through the row index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.pricing import round_half_up
from b2b_pipeline.domain.schemas.master_data import KNOWN_CURRENCIES
from b2b_pipeline.domain.schemas.orders import MAX_TEXT_LENGTH, PortalOrderLines, PortalOrders

ORDER_COLUMNS = list(PortalOrders.to_schema().columns)
LINE_COLUMNS = list(PortalOrderLines.to_schema().columns)

# Raw columns the wire module fills (one row per purchase / per line item).
RAW_ORDER_COLUMNS = [
    "position", "portal_order_id", "visible_id", "type", "fulfilment_status",
    "customer_sparklayer_id", "currency", "payment_method", "paid", "po_number",
    "portal_gross_raw", "placed_at_raw", "updated_at_raw", "payload",
]  # fmt: skip
RAW_LINE_COLUMNS = ["position", "line_no", "sku", "quantity_raw", "line_net_raw", "line_tax_raw"]

# A money amount as the wire sends it: a plain decimal string ("12.50"). "12,50", "£12.50",
# "1e3" or "" are not amounts; a sign is parsed so that a negative amount is reported as such.
DECIMAL_AMOUNT = r"-?\d+(?:\.\d+)?"
# Problems listed in one exception message; the payload holds the rest.
MAX_REASONS_IN_MESSAGE = 5
# Largest gap accepted between the sum of the line totals and the checkout total (rounding of
# each line's tax to the penny may leave up to half a penny per line; a whole penny is noise).
TOTALS_SLACK = 0.01 + 1e-6

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
class RawPurchases:
    """A batch of purchases as the wire module read it.

    ``orders`` has one row per entry of the batch (``RAW_ORDER_COLUMNS``), ``lines`` one row per
    line item (``RAW_LINE_COLUMNS``, ``line_no`` counted from 1 across the purchase's packages),
    ``problems`` maps a batch position to what is structurally wrong with that entry, and the
    field maps give, per column, where the value sits in the document (for messages).
    """

    orders: pd.DataFrame
    lines: pd.DataFrame
    problems: dict[int, list[str]] = field(default_factory=dict)
    order_fields: Mapping[str, str] = field(default_factory=dict)
    line_fields: Mapping[str, str] = field(default_factory=dict)
    # Entries that are not even an object: that one reason says it all.
    unreadable: frozenset[int] = frozenset()


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
    """Add the portal company's accounting_id, name and tax treatment (the purchase document
    carries none of them: the company is the source)."""
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
    orders["tax_exempt"] = by_customer.map(customers["tax_exempt"]).eq(True)
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
    failures: pd.DataFrame,
    raw_values: dict[str, pd.Series],
    positions: pd.Series[int],
    fields: Mapping[str, str],
) -> list[tuple[int, str]]:
    problems = []
    for index, column, check in (
        failures[["index", "column", "check"]]
        .drop_duplicates(["index", "column"])
        .itertuples(index=False)
    ):
        raw = raw_values[column].at[index] if column in raw_values else None
        field = fields.get(column, column)
        problem = _problem(field, check, raw, EXPECTED.get(column))
        problems.append((int(positions.loc[index]), problem))
    return problems


def _line_problems(
    failures: pd.DataFrame,
    raw_values: dict[str, pd.Series],
    lines: pd.DataFrame,
    fields: Mapping[str, str],
) -> list[tuple[int, str]]:
    problems = []
    # A line's order id is the order's: a missing one is reported once, on the order.
    failures = failures[failures["column"] != "portal_order_id"]
    line_nos: pd.Series[int] = lines["line_no"]
    positions: pd.Series[int] = lines["position"]
    for index, column, check in (
        failures[["index", "column", "check"]]
        .drop_duplicates(["index", "column"])
        .itertuples(index=False)
    ):
        raw = raw_values[column].at[index] if column in raw_values else None
        field = f"line {line_nos.loc[index]} {fields.get(column, column)}"
        problem = _problem(field, check, raw, EXPECTED.get(column))
        problems.append((int(positions.loc[index]), problem))
    return problems


def _fallback_key(payload: str) -> str:
    """A stable key for a purchase with no id, so its exception is not opened twice."""
    return "unidentified-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def _malformed_rows(orders: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    rows = []
    # The malformed orders' rows by position, as dicts (the orders are indexed by position).
    by_position = orders.loc[sorted(reasons)].to_dict("index")
    for position, problems in sorted(reasons.items()):
        order = by_position[position]
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


def _totals_rows(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders whose line totals (net + tax) do not add up to the checkout total."""
    gap = (orders["portal_net"] + orders["portal_tax"] - orders["portal_gross"]).abs()
    bad = orders[gap > TOTALS_SLACK]
    if bad.empty:
        return exception_frame()
    label = bad["visible_id"].fillna(bad["portal_order_id"]).astype(str)
    lines_total = (bad["portal_net"] + bad["portal_tax"]).map("{:,.2f}".format)
    return exception_frame(
        pd.DataFrame(
            {
                "entity": "order",
                "entity_key": bad["portal_order_id"].astype(str),
                "account_code": bad["accounting_id"],
                "reason_code": "TOTALS_DO_NOT_ADD_UP",
                "message": "Portal order "
                + label
                + " was not sent to the ERP: its lines add up to "
                + lines_total
                + " "
                + bad["currency"].astype(str)
                + " (net plus tax) but its checkout total is "
                + bad["portal_gross"].map("{:,.2f}".format)
                + ". The portal record is inconsistent: ask SparkLayer support or correct the "
                "order in the portal, then retry.",
                "payload": bad["payload"],
            }
        )
    )


def normalise_purchases(
    raw: RawPurchases,
    portal_customers: pd.DataFrame,
    *,
    currencies: Collection[str] | None = None,
) -> NormalisedOrders:
    """Turn a batch read by the wire module into orders and lines; set malformed ones aside.

    Args:
        raw: the batch as ``connectors.sparklayer.purchases.read_purchases`` read it.
        portal_customers: portal customers (``id``, ``accounting_id``, ``company_name``,
            ``tax_exempt``); gives each order its ERP account mapping and tax treatment.
        currencies: the currencies the ERP trades in (e.g. its price lists' currencies); a
            purchase in any other is malformed. Default: the project's supported set.

    When one purchase id appears twice in the batch, the later (newer) version is kept.
    """
    currencies = set(currencies) if currencies is not None else set(KNOWN_CURRENCIES)
    reasons: dict[int, list[str]] = {pos: list(found) for pos, found in raw.problems.items()}
    orders = raw.orders.reindex(columns=RAW_ORDER_COLUMNS).set_index("position", drop=False)
    orders.index.name = None
    lines = raw.lines.reindex(columns=RAW_LINE_COLUMNS).reset_index(drop=True)

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
    orders["paid"] = orders["paid"].eq(True)
    lines["quantity"] = _parse_quantities(lines["quantity_raw"])
    lines["portal_line_net"] = _parse_amounts(lines["line_net_raw"])
    lines["portal_line_tax"] = _parse_amounts(lines["line_tax_raw"])
    # No unit price on the wire: the line's net over its quantity (4 dp, as the ERP stores it).
    lines["portal_unit_price"] = round_half_up(lines["portal_line_net"] / lines["quantity"], 4)
    lines["portal_order_id"] = lines["position"].map(orders["portal_order_id"])
    # Order net and tax are the sums of its lines (min_count: an order with no line stays NaN).
    sums = lines.groupby("position")[["portal_line_net", "portal_line_tax"]].sum(min_count=1)
    orders["portal_net"] = round_half_up(orders["position"].map(sums["portal_line_net"]), 2)
    orders["portal_tax"] = round_half_up(orders["position"].map(sums["portal_line_tax"]), 2)
    orders = _join_customers(orders, portal_customers)

    bad_placed = orders["placed_at"].isna() & orders["placed_at_raw"].notna()
    placed_field = raw.order_fields.get("placed_at", "placed_at")
    bad = orders[bad_placed]
    for position, value in zip(bad["position"].astype(int), bad["placed_at_raw"], strict=True):
        reasons.setdefault(position, []).append(
            f"{placed_field} {_shown(value)} is not an ISO-8601 time"
        )

    raw_order_values = {
        "portal_gross": orders["portal_gross_raw"],
        "updated_at": orders["updated_at_raw"],
        **{c: orders[c] for c in ("company_name", "po_number", "currency")},
    }
    raw_line_values = {
        "quantity": lines["quantity_raw"],
        "portal_unit_price": lines["line_net_raw"],
        "portal_line_net": lines["line_net_raw"],
        "portal_line_tax": lines["line_tax_raw"],
        "sku": lines["sku"],
    }
    order_failures = _failures(_order_schema(currencies), orders[ORDER_COLUMNS])
    line_failures = _failures(PortalOrderLines.to_schema(), lines[LINE_COLUMNS])
    # The unit price is derived from the net: a bad net is reported once, as the net.
    line_failures = line_failures[line_failures["column"] != "portal_unit_price"]
    for position, problem in [
        *_order_problems(order_failures, raw_order_values, orders["position"], raw.order_fields),
        *_line_problems(line_failures, raw_line_values, lines, raw.line_fields),
    ]:
        if position not in raw.unreadable:
            reasons.setdefault(position, []).append(problem)

    malformed = _malformed_rows(orders, reasons)
    bad_positions = list(reasons)
    readable = orders[~orders["position"].isin(bad_positions)]
    totals = _totals_rows(readable)
    bad_positions += readable.loc[
        readable["portal_order_id"].astype(str).isin(totals["entity_key"]), "position"
    ].tolist()
    clean_orders = orders[~orders["position"].isin(bad_positions)][ORDER_COLUMNS]
    clean_lines = lines[~lines["position"].isin(bad_positions)][LINE_COLUMNS]
    clean_lines = clean_lines.astype({"quantity": "int64", "line_no": "int64"})
    return NormalisedOrders(
        orders=clean_orders.reset_index(drop=True),
        lines=clean_lines.reset_index(drop=True),
        malformed=pd.concat([malformed, totals], ignore_index=True),
    )
