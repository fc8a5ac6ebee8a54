"""ERP price lists -> the portal's price lists and the pricing rows that changed.

Only changed SKUs are sent: the ERP's breaks and the portal's (the last pushed snapshot, or
what was read back from the portal to repair drift) are compared in one DuckDB FULL OUTER JOIN
over (list, SKU, minimum quantity): well under a second for a million rows on two cores,
where pandas merges took 3 s (``benchmarks/bench_price_changes.py``). The portal's PATCH
replaces every break of each SKU it is sent, so a changed SKU is sent with its complete new set
of breaks, and a SKU gone from the ERP with ``pricing: []``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain.exceptions import exception_frame, to_payload
from b2b_pipeline.domain.schemas.master_data import (
    PRICE_LIST_SLUG_MAX_LENGTH,
    AllowedValues,
    ErpPriceListItems,
    ErpPriceLists,
    RecordNaming,
    allowed,
    price_list_exists,
    sku_in_catalogue,
    validate_extract,
)
from b2b_pipeline.duckdb_instance import scratch

# SKUs per PATCH /api/v1/price-lists/{slug}/pricing (contracts/sparklayer-api.md §3).
PRICING_BATCH_SIZE = 500
# The portal's limit on a price list name.
PRICE_LIST_NAME_MAX_LENGTH = 64

PRICE_CHANGE_COLUMNS = ["price_list_slug", "sku", "change", "pricing"]


class PriceListCodeTooLong(ValueError):
    """An ERP price list code cannot be a portal slug (more than 30 characters)."""


# --- validation -----------------------------------------------------------------------------


def validate_price_lists(
    erp_price_lists: pd.DataFrame, mappings: Mappings | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``erp_price_lists`` into (clean lists, exception rows).

    A code longer than the portal's 30-character slug, an unknown currency, a duplicated code or
    a parent list that does not exist are ``INVALID_ERP_RECORD`` exceptions.
    """
    parent_rule = AllowedValues(
        column="parent_code",
        name="parent_list_exists",
        allowed=allowed(erp_price_lists.get("code", [])),
        phrase="the parent list {value} does not exist in the ERP",
    )
    naming = RecordNaming(
        entity="price_list",
        key=lambda records: records["code"],
        label=lambda records: "Price list " + records["code"],
        extra_rules=(parent_rule,),
    )
    return validate_extract(erp_price_lists, ErpPriceLists, naming)


def validate_price_list_items(
    erp_price_list_items: pd.DataFrame,
    mappings: Mappings | None = None,
    *,
    price_lists: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``erp_price_list_items`` into (clean breaks, exception rows).

    A negative price, a minimum quantity below 1 or a duplicated (list, SKU, minimum quantity)
    are exceptions. With ``price_lists`` / ``products`` (the clean extracts), a break on a list
    or of a SKU that is not among them is one too.

    When one break of a SKU is bad, the SKU's other breaks on that list are held back with it
    (the exception says so): the portal replaces a SKU's breaks as a whole, so sending
    the rest would change prices the ERP never changed. Pass the exception rows to
    :func:`price_changes` as ``held_back`` so that the portal keeps the SKU's last good prices
    rather than losing them.
    """
    rules = []
    if price_lists is not None:
        rules.append(price_list_exists(price_lists))
    if products is not None:
        rules.append(sku_in_catalogue(products))
    naming = RecordNaming(
        entity="price_list",
        key=lambda r: r["price_list_code"] + "/" + r["sku"] + "/" + r["min_quantity"],
        label=lambda r: (
            "Price list "
            + r["price_list_code"]
            + ", SKU "
            + r["sku"]
            + ", break "
            + r["min_quantity"]
        ),
        extra_rules=tuple(rules),
        then="Correct it in the ERP; until then the portal keeps this SKU's current prices on "
        "this list, and the next sync after the fix sends them all.",
    )
    clean, exceptions = validate_extract(erp_price_list_items, ErpPriceListItems, naming)
    held = held_back_skus(exceptions)
    if held.empty:
        return clean, exceptions
    return _without(clean, "price_list_code", held).reset_index(drop=True), exceptions


def _without(frame: pd.DataFrame, list_column: str, pairs: pd.DataFrame) -> pd.DataFrame:
    """``frame`` less the rows of the (``price_list_code``, ``sku``) ``pairs``."""
    # Most rows share neither the SKU nor the list of a pair: match whole pairs only on the rest.
    candidates = np.flatnonzero(
        frame["sku"].isin(pairs["sku"]).to_numpy()
        & frame[list_column].isin(pairs["price_list_code"]).to_numpy()
    )
    matched = frame.iloc[candidates][[list_column, "sku"]].merge(
        pairs[["price_list_code", "sku"]].drop_duplicates(),
        how="left",
        left_on=[list_column, "sku"],
        right_on=["price_list_code", "sku"],
        indicator=True,
    )
    keep = np.ones(len(frame), dtype=bool)
    keep[candidates[(matched["_merge"] == "both").to_numpy()]] = False
    return frame[keep]


def held_back_skus(price_item_exceptions: pd.DataFrame) -> pd.DataFrame:
    """(``price_list_code``, ``sku``) of every SKU with a break that did not pass validation,
    read from the exception rows of :func:`validate_price_list_items` (their payload is the
    ERP row as received, or the list of copies of a duplicated one).

    Pass it to :func:`price_changes` as ``held_back``: the portal keeps those SKUs' last good
    prices on that list until the ERP is corrected.
    """
    records: list[dict[str, Any]] = []
    for payload in price_item_exceptions["payload"]:
        received = json.loads(payload)
        records.extend(received if isinstance(received, list) else [received])
    keys = ["price_list_code", "sku"]
    held = pd.DataFrame(records).reindex(columns=keys)
    # Compared as validation reads them: trimmed text; a break with no list or SKU names no
    # portal price.
    for key in keys:
        held[key] = held[key].map(lambda v: "" if v is None or v != v else str(v).strip())
    held = held[(held["price_list_code"] != "") & (held["sku"] != "")]
    return held.drop_duplicates().sort_values(keys).reset_index(drop=True).astype(object)


# --- lists --------------------------------------------------------------------------------


def desired_price_lists(erp_price_lists: pd.DataFrame) -> pd.DataFrame:
    """The portal price lists the ERP implies: ``slug`` (the ERP code), ``name``,
    ``currency_code``, ``parent_slug``.

    Raises :class:`PriceListCodeTooLong` for a code the portal cannot take as a slug;
    :func:`validate_price_lists` turns such lists into exceptions first, so a sync that validates
    never meets it.
    """
    codes = erp_price_lists["code"].astype(str)
    too_long = codes[codes.str.len() > PRICE_LIST_SLUG_MAX_LENGTH]
    if len(too_long):
        raise PriceListCodeTooLong(
            f"price list code(s) {', '.join(too_long)} are longer than "
            f"{PRICE_LIST_SLUG_MAX_LENGTH} characters, the portal's limit for a price list slug: "
            "shorten the code in the ERP"
        )
    parent = (
        erp_price_lists["parent_code"]
        if "parent_code" in erp_price_lists
        else pd.Series(None, index=erp_price_lists.index, dtype=object)
    )
    return pd.DataFrame(
        {
            "slug": codes,
            # A name is display text: cutting it to the portal's limit loses nothing a rule uses.
            "name": erp_price_lists["name"].astype(str).str.slice(0, PRICE_LIST_NAME_MAX_LENGTH),
            "currency_code": erp_price_lists["currency"],
            "parent_slug": parent.astype(object).where(parent.notna(), None),
        }
    ).reset_index(drop=True)


def lists_to_create(desired: pd.DataFrame, portal_lists: pd.DataFrame) -> pd.DataFrame:
    """The desired lists the portal does not have yet (create these before pushing prices)."""
    existing = set(portal_lists["slug"]) if "slug" in portal_lists else set()
    return desired[~desired["slug"].isin(existing)].reset_index(drop=True)


# --- what the portal must hold: the ERP's answer under the portal's rule -------------------


# The portal prices a buyer from the FIRST of their lists that prices the SKU, at that list's
# largest break reached (contract §3); the ERP takes the lowest break reached over the account's
# list and its parent (domain/pricing.py). So a customer-specific list is pushed as its effective
# breaks: for each SKU it prices, every break quantity of either list, priced at the ERP's answer
# there, which is the running minimum, by quantity, over both lists' breaks. These CTEs turn the
# ERP's breaks (``raw_items``) and the lists with a parent (``children``: code, parent_code) into
# ``erp_items``, what the portal must hold: one hash join (child SKUs to their parent's breaks),
# one GROUP BY and one window, over the customer-specific rows only (group lists pass through
# unchanged). Inlined into the change query, so the million rows never leave DuckDB; the
# customer-specific part is materialised once, since the change query reads ``erp_items`` twice.
_EFFECTIVE_CTES = """
own AS (
    SELECT i.price_list_code, i.sku, i.min_quantity, i.unit_price, c.parent_code
    FROM raw_items AS i JOIN children AS c ON i.price_list_code = c.code
),
candidates AS (
    SELECT price_list_code, sku, min_quantity, unit_price FROM own
    UNION ALL
    SELECT s.price_list_code, s.sku, p.min_quantity, p.unit_price
    FROM (SELECT DISTINCT price_list_code, sku, parent_code FROM own) AS s
    JOIN raw_items AS p ON p.price_list_code = s.parent_code AND p.sku = s.sku
),
per_quantity AS (
    SELECT price_list_code, sku, min_quantity, min(unit_price) AS unit_price
    FROM candidates
    GROUP BY ALL
),
effective AS MATERIALIZED (
    SELECT price_list_code, sku, min_quantity,
           min(unit_price) OVER (
               PARTITION BY price_list_code, sku ORDER BY min_quantity
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS unit_price
    FROM per_quantity
),
erp_items AS (
    SELECT price_list_code, sku, min_quantity, unit_price
    FROM raw_items ANTI JOIN children ON raw_items.price_list_code = children.code
    UNION ALL
    SELECT price_list_code, sku, min_quantity, unit_price FROM effective
)
"""

_ERP_ITEM_COLUMNS = {
    "price_list_code": "object",
    "sku": "object",
    "min_quantity": "int64",
    "unit_price": "float64",
}


def _child_lists(price_lists: pd.DataFrame | None) -> pd.DataFrame:
    """``code``, ``parent_code`` of every list that sits on top of another (customer-specific)."""
    if price_lists is None or "parent_code" not in price_lists or price_lists.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in ("code", "parent_code")})
    lists = price_lists[["code", "parent_code"]].drop_duplicates("code")
    has_parent = lists["parent_code"].notna() & (lists["parent_code"] != lists["code"])
    return lists[has_parent].astype(object).reset_index(drop=True)


def effective_price_list_items(
    erp_items: pd.DataFrame, erp_price_lists: pd.DataFrame | None
) -> pd.DataFrame:
    """The breaks each portal list must hold so that the portal charges what the ERP charges.

    ``erp_items``: the clean ERP breaks (``price_list_code``, ``sku``, ``min_quantity``,
    ``unit_price``); ``erp_price_lists``: ``code`` and ``parent_code``.

    A list with no parent (a group list) is returned as the ERP holds it. A customer-specific
    list (one with a parent) keeps exactly the SKUs it prices in the ERP, each with the union of
    its own and its parent's break quantities for that SKU, every one priced at the ERP rule's
    answer at that quantity: the lowest price of any break of either list that the quantity
    reaches. The portal, taking that list first and its largest break reached, then gives the
    ERP's price at every quantity; a SKU the customer-specific list does not price falls through
    to the group list on both sides. Only one level of parent is used, as the ERP's rule does.

    Same columns as ``erp_items``; rows in no particular order.
    """
    items = _frame(erp_items, _ERP_ITEM_COLUMNS)
    children = _child_lists(erp_price_lists)
    is_child = items["price_list_code"].isin(children["code"]).to_numpy()
    if not is_child.any():
        return items.reset_index(drop=True)
    with scratch() as connection:
        connection.register("raw_items", items)
        connection.register("children", children)
        effective = connection.execute(f"WITH {_EFFECTIVE_CTES} SELECT * FROM effective").df()
    return pd.concat([items[~is_child], effective], ignore_index=True)


def held_back_with_children(
    held_back: pd.DataFrame | None, erp_price_lists: pd.DataFrame | None
) -> pd.DataFrame:
    """``held_back`` pairs plus the same SKU on every customer-specific list over a held list.

    A customer-specific list's effective breaks are computed from its parent's too: while a
    group list's SKU is held back (its ERP rows failed validation), the child lists' copies of
    that SKU must keep their last pushed prices as well, rather than be recomputed without the
    group's breaks.
    """
    keys = ["price_list_code", "sku"]
    if held_back is None or held_back.empty:
        return pd.DataFrame({key: pd.Series(dtype=object) for key in keys})
    held = held_back[keys].astype(object)
    children = _child_lists(erp_price_lists)
    inherited = held.merge(children, left_on="price_list_code", right_on="parent_code")
    inherited = inherited[["code", "sku"]].rename(columns={"code": "price_list_code"})
    return (
        pd.concat([held, inherited], ignore_index=True)
        .drop_duplicates()
        .reset_index(drop=True)
        .astype(object)
    )


# --- prices -------------------------------------------------------------------------------


# Two hash joins, each run on all cores: (1) the FULL OUTER JOIN of every break finds the
# (list, SKU) pairs with any break added, removed or repriced, a few out of a million; (2) the
# ERP's complete breaks of just those pairs (the PATCH replaces a SKU's breaks as a whole).
# Grouping all million rows by (list, SKU) instead costs a third more, and so would a second
# scan of the portal's rows: whether the portal had the SKU at all (added vs changed) follows
# from the counts. A SKU is new to the portal when none of its breaks matched or was
# portal-only, and every ERP break of it is ERP-only.
# The CTEs of the change query (``WITH`` is added by the caller, after any CTE defining
# ``erp_items``).
_CHANGED_SKUS_SQL = """
changed AS (
    SELECT
        coalesce(erp.price_list_code, portal.price_list_slug) AS price_list_slug,
        coalesce(erp.sku, portal.sku) AS sku,
        count(*) FILTER (WHERE portal.sku IS NULL) AS erp_only,
        count(*) FILTER (WHERE erp.sku IS NULL OR portal.sku IS NOT NULL) AS on_portal
    FROM erp_items AS erp
    FULL OUTER JOIN portal_items AS portal
        ON erp.price_list_code = portal.price_list_slug
        AND erp.sku = portal.sku
        AND erp.min_quantity = portal.quantity
    WHERE erp.sku IS NULL
        OR portal.sku IS NULL
        -- 4 decimals: the ERP's NUMERIC(14,4); the portal's float round trip must not count.
        OR round(erp.unit_price, 4) <> round(portal.price, 4)
    GROUP BY ALL
),
new_breaks AS (
    SELECT
        erp.price_list_code AS price_list_slug,
        erp.sku,
        list({'quantity': erp.min_quantity, 'price': erp.unit_price} ORDER BY erp.min_quantity)
            AS pricing
    FROM erp_items AS erp
    SEMI JOIN changed
        ON erp.price_list_code = changed.price_list_slug AND erp.sku = changed.sku
    GROUP BY erp.price_list_code, erp.sku
)
SELECT
    changed.price_list_slug,
    changed.sku,
    CASE
        WHEN new_breaks.sku IS NULL THEN 'removed'
        WHEN changed.on_portal = 0 AND changed.erp_only = len(new_breaks.pricing) THEN 'added'
        ELSE 'changed'
    END AS change,
    coalesce(new_breaks.pricing, []) AS pricing
FROM changed
LEFT JOIN new_breaks
    ON new_breaks.price_list_slug = changed.price_list_slug AND new_breaks.sku = changed.sku
ORDER BY changed.price_list_slug, changed.sku
"""


def _frame(
    df: pd.DataFrame | None, columns: dict[str, str], *, for_sql: bool = False
) -> pd.DataFrame:
    """The columns the comparison reads, typed; an empty snapshot has the same shape.

    ``for_sql``: the frame only goes to DuckDB, so when nothing needs a cast it is handed over
    whole (with any other columns it has): DuckDB's scan reads only the columns a query names,
    and selecting them here would copy every one (0.06 s a million rows)."""
    if df is None or df.empty:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    # Cast only what differs: copying a million strings costs more than the join.
    casts = {name: dtype for name, dtype in columns.items() if str(df[name].dtype) != dtype}
    if for_sql and not casts:
        return df
    frame = df[list(columns)]
    return frame.astype(casts) if casts else frame


def price_changes(
    erp_items: pd.DataFrame,
    portal_items: pd.DataFrame | None,
    *,
    held_back: pd.DataFrame | None = None,
    erp_price_lists: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (list, SKU) whose set of breaks differs between the ERP and the portal.

    ``erp_items``: the clean ERP breaks (``price_list_code``, ``sku``, ``min_quantity``,
    ``unit_price``). ``portal_items``: what the portal holds (``price_list_slug``, ``sku``,
    ``quantity``, ``price``). ``held_back``: (``price_list_code``, ``sku``) pairs whose ERP rows
    failed validation; they are left as the portal has them instead of being removed.
    ``erp_price_lists`` (``code``, ``parent_code``): when given, the portal is compared with the
    effective lists (:func:`effective_price_list_items`: what the portal must hold so that it
    charges what the ERP charges), computed inside the same query; ``held_back`` then extends
    to the customer-specific lists over a held group list (:func:`held_back_with_children`).
    This is how the sync calls it; without it the ERP's breaks are compared as they are.

    Returns ``price_list_slug``, ``sku``, ``change`` (``added`` | ``changed`` | ``removed``) and
    ``pricing``: the SKU's complete new breaks ``[{"quantity", "price"}]`` by quantity, ``[]``
    for a removed SKU.
    """
    erp = _frame(erp_items, _ERP_ITEM_COLUMNS, for_sql=True)
    portal = _frame(
        portal_items,
        {"price_list_slug": "object", "sku": "object", "quantity": "int64", "price": "float64"},
        for_sql=True,
    )
    children = _child_lists(erp_price_lists)
    if erp_price_lists is not None:
        held_back = held_back_with_children(held_back, erp_price_lists)
    if held_back is not None and len(held_back):
        # Left out on both sides: not sent, and not removed from the portal either.
        erp = _without(erp, "price_list_code", held_back)
        portal = _without(portal, "price_list_slug", held_back)
    with scratch() as connection:
        # Registered, not copied: DuckDB scans the pandas columns in place.
        connection.register("portal_items", portal)
        if children.empty:
            connection.register("erp_items", erp)
            changes = connection.execute(f"WITH {_CHANGED_SKUS_SQL}").df()
        else:
            connection.register("raw_items", erp)
            connection.register("children", children)
            changes = connection.execute(f"WITH {_EFFECTIVE_CTES}, {_CHANGED_SKUS_SQL}").df()
    # DuckDB hands lists over as numpy arrays of dicts; the wire wants JSON lists.
    changes["pricing"] = [list(breaks) for breaks in changes["pricing"]]
    return changes[PRICE_CHANGE_COLUMNS]


def pricing_batches(changes: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The PATCH bodies per list: ``{slug: [{"sku", "pricing": [{"quantity", "price"}]}]}``.

    The client splits each list's items at :data:`PRICING_BATCH_SIZE`, so a list needs
    ``ceil(changed SKUs / 500)`` calls, the minimum.
    """
    batches: dict[str, list[dict[str, Any]]] = {}
    for slug, sku, pricing in zip(
        changes["price_list_slug"], changes["sku"], changes["pricing"], strict=True
    ):
        batches.setdefault(slug, []).append(
            {
                "sku": sku,
                "pricing": [
                    {"quantity": int(b["quantity"]), "price": float(b["price"])} for b in pricing
                ],
            }
        )
    return batches


def minimum_pricing_calls(changes: pd.DataFrame, batch_size: int = PRICING_BATCH_SIZE) -> int:
    """``sum over lists of ceil(changed SKUs / batch_size)``: the fewest PATCH calls possible."""
    per_list = changes.groupby("price_list_slug").size()
    return int(sum(math.ceil(n / batch_size) for n in per_list))


def snapshot_after_push(
    previous: pd.DataFrame | None, changes: pd.DataFrame, rejected: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The portal's pricing after ``changes`` were pushed, as ``portal_items`` for next time.

    Rows the portal ``rejected`` (``price_list_slug``, ``sku``) keep their previous breaks, so
    they are compared, and sent, again on the next sync.
    """
    previous = _frame(
        previous,
        {"price_list_slug": "object", "sku": "object", "quantity": "int64", "price": "float64"},
    )
    applied = changes
    if rejected is not None and len(rejected):
        keys = changes[["price_list_slug", "sku"]].merge(
            rejected[["price_list_slug", "sku"]].drop_duplicates(), how="left", indicator=True
        )
        applied = changes[(keys["_merge"] == "left_only").to_numpy()]
    touched = previous[["price_list_slug", "sku"]].merge(
        applied[["price_list_slug", "sku"]], how="left", indicator=True
    )
    kept = previous[(touched["_merge"] == "left_only").to_numpy()]
    new_breaks = applied[["price_list_slug", "sku", "pricing"]].explode("pricing").dropna()
    # One frame from the break dicts at once (a first sync pushes a million of them).
    values = pd.DataFrame(new_breaks["pricing"].tolist(), columns=["quantity", "price"]).astype(
        {"quantity": "int64", "price": "float64"}
    )
    new_rows = pd.DataFrame(
        {
            "price_list_slug": new_breaks["price_list_slug"].to_numpy(),
            "sku": new_breaks["sku"].to_numpy(),
            "quantity": values["quantity"].to_numpy(),
            "price": values["price"].to_numpy(),
        }
    )
    return pd.concat([kept, new_rows], ignore_index=True).astype(
        {"quantity": "int64", "price": "float64"}
    )


# --- results ------------------------------------------------------------------------------


def rejected_pricing_rows(slug: str, rejected: Iterable[Any]) -> pd.DataFrame:
    """The client's ``BatchResult.rejected`` for one list as rows for
    :func:`price_sync_exceptions`: ``price_list_slug``, ``sku``, ``field``, ``message``."""
    rows = [
        {
            "price_list_slug": row.item.get("price_list_slug", slug),
            "sku": row.item.get("sku"),
            "field": row.field,
            "message": row.message,
        }
        for row in rejected
    ]
    return pd.DataFrame(rows, columns=["price_list_slug", "sku", "field", "message"])


def _who_uses(customers_by_list: pd.DataFrame) -> pd.DataFrame:
    """Per list: the accounts that see it, named for a reader, and the one account if only one."""
    named = customers_by_list.assign(
        who=customers_by_list["company_name"].fillna(customers_by_list["account_code"])
        + " ("
        + customers_by_list["account_code"]
        + ")"
    ).sort_values(["price_list_slug", "account_code"])

    def names(group: pd.Series) -> str:
        shown = ", ".join(group.iloc[:3])
        return shown if len(group) <= 3 else f"{shown} and {len(group) - 3} more"

    per_list = named.groupby("price_list_slug").agg(
        customers=("who", names),
        customer_count=("who", "size"),
        only_account=("account_code", "first"),
    )
    per_list.loc[per_list["customer_count"] != 1, "only_account"] = None
    return per_list.reset_index()


def price_sync_exceptions(
    rejected_rows: pd.DataFrame, customers_by_list: pd.DataFrame
) -> pd.DataFrame:
    """Pricing the portal did not take, as ``PRICING`` exceptions that name who is affected.

    ``rejected_rows``: ``price_list_slug``, ``sku`` (None when a whole list failed to update),
    ``field``, ``message`` (the portal's reason). ``customers_by_list``:
    :func:`b2b_pipeline.domain.customers.customers_by_price_list`. A rejected SKU is
    ``PORTAL_REJECTED_ROW``; a list that failed as a whole is ``PRICE_LIST_SYNC_FAILED``. The
    exception's ``account_code`` is set when exactly one account uses the list (a
    customer-specific list).
    """
    if rejected_rows.empty:
        return exception_frame()
    rows = rejected_rows.reindex(columns=["price_list_slug", "sku", "field", "message"]).merge(
        _who_uses(customers_by_list), how="left", on="price_list_slug"
    )
    whole_list = rows["sku"].isna()
    rows["payload"] = [
        to_payload(record)
        for record in rows[["price_list_slug", "sku", "field", "message"]].to_dict("records")
    ]
    reason = rows["message"].fillna("no reason given").astype(str)
    reason = reason.where(rows["field"].isna(), rows["field"].astype(str) + ": " + reason)
    sku = rows["sku"].astype(object).where(~whole_list, "").astype(str)
    nobody = "no customer uses this list yet"
    see = rows["customer_count"].eq(1).map({True: " still sees", False: " still see"})
    rejected_sku = (
        "Price list "
        + rows["price_list_slug"]
        + ", SKU "
        + sku
        + ": the portal refused the new prices ("
        + reason
        + "), "
        + ("so " + rows["customers"] + see + " the old price").fillna(nobody)
        + ". Correct it in the ERP; the next sync sends it."
    )
    failed_list = (
        "Price list "
        + rows["price_list_slug"]
        + " did not update ("
        + reason
        + "), "
        + ("so " + rows["customers"] + see + " the old prices").fillna(nobody)
        + ". The next sync retries; if it keeps failing, check the list in the portal."
    )
    rows["entity"] = "price_list"
    rows["entity_key"] = rows["price_list_slug"].where(
        whole_list, rows["price_list_slug"] + "/" + sku
    )
    rows["reason_code"] = whole_list.map(
        {True: "PRICE_LIST_SYNC_FAILED", False: "PORTAL_REJECTED_ROW"}
    )
    rows["account_code"] = rows["only_account"]
    rows["message"] = rejected_sku.where(~whole_list, failed_list)
    return exception_frame(rows)


# --- around a push --------------------------------------------------------------------------


class EmptyPriceExtract(ValueError):
    """The ERP returned no prices at all while the portal holds some."""


def refuse_empty_extract(erp_items: pd.DataFrame, portal_items: pd.DataFrame | None) -> None:
    """Raise :class:`EmptyPriceExtract` rather than remove every price from the portal.

    An empty extract is far more likely a broken ERP read than a merchant with no prices.
    """
    if erp_items.empty and portal_items is not None and len(portal_items):
        raise EmptyPriceExtract(
            "The ERP returned no prices at all while the portal holds some: refusing to remove "
            "every price from the portal. Check the ERP's price lists, then rerun."
        )


def portal_list_slugs(portal_lists: pd.DataFrame) -> set[str]:
    """The slugs of the price lists the portal holds (``iter_price_lists`` as a frame)."""
    return set(portal_lists["slug"]) if "slug" in portal_lists else set()


# What the portal holds, one row per break (the snapshot, or the portal read back).
_PORTAL_ITEM_DTYPES = {
    "price_list_slug": "object",
    "sku": "object",
    "quantity": "int64",
    "price": "float64",
}


def portal_pricing_rows(slug: str, items: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A list's pricing as the portal answered it (``{"sku", "pricing": [{"quantity",
    "price"}]}`` per SKU) as ``portal_items`` rows: one per break."""
    per_sku = pd.DataFrame(list(items), columns=["sku", "pricing"])
    breaks = per_sku.explode("pricing", ignore_index=True).dropna(subset=["pricing"])
    if breaks.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in _PORTAL_ITEM_DTYPES.items()})
    values = pd.DataFrame(breaks["pricing"].tolist(), columns=["quantity", "price"])
    return pd.DataFrame(
        {
            "price_list_slug": slug,
            "sku": breaks["sku"].to_numpy(),
            "quantity": values["quantity"].astype("int64").to_numpy(),
            "price": values["price"].astype("float64").to_numpy(),
        }
    )


def failed_list_rows(slug: str, items: Iterable[Mapping[str, Any]], message: str) -> pd.DataFrame:
    """Rows of :func:`price_sync_exceptions` for a list whose update failed as a whole: one row
    naming the list (``sku`` None, with the portal's reason) and one per SKU sent (``items``:
    its :func:`pricing_batches` body; no message), so those SKUs keep their previous breaks in
    the snapshot and are sent again next run."""
    skus = [item["sku"] for item in items]
    return pd.DataFrame(
        {
            "price_list_slug": slug,
            "sku": [None, *skus],
            "field": None,
            "message": [message, *([None] * len(skus))],
        },
        columns=["price_list_slug", "sku", "field", "message"],
    )


def applied_changes(changes: pd.DataFrame, not_applied: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``changes`` the portal took (``not_applied``: ``price_list_slug``, ``sku``)."""
    if not_applied.empty:
        return changes
    keys = changes[["price_list_slug", "sku"]].merge(
        not_applied[["price_list_slug", "sku"]].drop_duplicates(), how="left", indicator=True
    )
    return changes[(keys["_merge"] == "left_only").to_numpy()]


def price_history(
    applied: pd.DataFrame, erp_price_lists: pd.DataFrame, *, pushed_at: datetime
) -> pd.DataFrame:
    """Every break pushed, valid from ``pushed_at``, for the audit's price history: a removed
    SKU is one row with no quantity and no price, which closes its validity.

    Columns: ``price_list_slug``, ``sku``, ``min_quantity`` (Int64), ``price`` (Float64),
    ``currency``, ``pushed_at``.
    """
    exploded = applied[["price_list_slug", "sku", "pricing"]].explode("pricing", ignore_index=True)
    has_break = exploded["pricing"].notna().to_numpy()  # a removed SKU explodes to NaN
    breaks = pd.DataFrame(
        exploded.loc[has_break, "pricing"].tolist(),
        index=exploded.index[has_break],
        columns=["quantity", "price"],
    )
    currency = (
        erp_price_lists.drop_duplicates("code").set_index("code")["currency"]
        if "currency" in erp_price_lists
        else pd.Series(dtype=object)
    )
    # Nullable columns built at once: a removed SKU (no break) is a row of NULLs, rather than a
    # frame of all-NULL rows concatenated onto the breaks, which pandas deprecates.
    return pd.DataFrame(
        {
            "price_list_slug": exploded["price_list_slug"],
            "sku": exploded["sku"],
            "min_quantity": breaks["quantity"].reindex(exploded.index).astype("Int64"),
            "price": breaks["price"].reindex(exploded.index).astype("Float64"),
            "currency": exploded["price_list_slug"].map(currency),
            "pushed_at": pushed_at,
        }
    )


def lists_to_compare(slugs: Iterable[str], most: int) -> list[str]:
    """Every list, sorted, when there are at most ``most``; else a deterministic spread of
    ``most`` of them (the same lists on every run, across the whole alphabet)."""
    ordered = sorted(set(slugs))
    if len(ordered) <= most:
        return ordered
    step = len(ordered) / most
    return [ordered[int(i * step)] for i in range(most)]


def price_drift(
    slugs: list[str],
    portal_items: pd.DataFrame,
    *,
    erp_items: pd.DataFrame,
    erp_price_lists: pd.DataFrame,
    held_back: pd.DataFrame | None,
) -> pd.DataFrame:
    """Where the portal's prices of ``slugs`` (``portal_items``, read back) differ from what
    the ERP implies: :func:`price_changes` rows of those lists only.

    A customer-specific list's effective breaks need its parent's breaks too, compared or not.
    """
    compared = erp_price_lists["code"].isin(slugs)
    parents = set(erp_price_lists.loc[compared, "parent_code"].dropna())
    erp = erp_items[erp_items["price_list_code"].isin(parents | set(slugs))]
    drift = price_changes(erp, portal_items, held_back=held_back, erp_price_lists=erp_price_lists)
    return drift[drift["price_list_slug"].isin(slugs)].reset_index(drop=True)
