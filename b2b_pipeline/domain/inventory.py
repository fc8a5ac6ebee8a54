"""ERP products and inventory -> portal stock levels, and the levels that changed.

The portal shows what a buyer can order now: on hand minus allocated, never below 0. The
pipeline keeps the last pushed snapshot and sends only the levels that differ from it (a minor
lag is the accepted price of staying under the portal's rate limit). A SKU and location that
left the ERP are set to 0 rather than left showing stock that no longer exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.schemas.master_data import (
    AllowedValues,
    ErpInventory,
    ErpProducts,
    RecordNaming,
    allowed,
    sku_in_catalogue,
    validate_extract,
)

# The batch-update-stock wire row (contracts/sparklayer-api.md §4).
STOCK_COLUMNS = ["stock_location_external_id", "sku", "stock_level"]
# Rows per POST /api/v1/batch-update-stock.
STOCK_BATCH_SIZE = 500


def validate_products(
    erp_products: pd.DataFrame, mappings: Mappings | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``erp_products`` into (clean catalogue, exception rows); a repeated SKU is one."""
    naming = RecordNaming(
        entity="product",
        key=lambda records: records["sku"],
        label=lambda records: "Product " + records["sku"],
    )
    return validate_extract(erp_products, ErpProducts, naming)


def validate_inventory(
    erp_inventory: pd.DataFrame,
    mappings: Mappings,
    *,
    products: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``erp_inventory`` into (clean stock rows, exception rows).

    Negative stock and a repeated (SKU, warehouse) are ``INVALID_ERP_RECORD``; a warehouse the
    mapping file does not place on a portal stock location is ``UNMAPPED_WAREHOUSE``. With
    ``products`` (the clean catalogue), stock of an unknown SKU is an exception too.
    """
    rules = [
        AllowedValues(
            column="warehouse_code",
            name="warehouse_mapped",
            allowed=allowed(mappings.stock_locations),
            phrase="the warehouse {value} has no portal stock location in the mapping file",
            reason_code="UNMAPPED_WAREHOUSE",
            then="Add the warehouse to stock_locations in the mapping file; the next sync "
            "sends its stock.",
        )
    ]
    if products is not None:
        rules.append(sku_in_catalogue(products))
    naming = RecordNaming(
        entity="inventory",
        key=lambda records: records["sku"] + "@" + records["warehouse_code"],
        label=lambda records: (
            "Stock of SKU " + records["sku"] + " in warehouse " + records["warehouse_code"]
        ),
        extra_rules=tuple(rules),
    )
    return validate_extract(erp_inventory, ErpInventory, naming)


def stock_levels(erp_inventory: pd.DataFrame, mappings: Mappings) -> pd.DataFrame:
    """Orderable stock per SKU and portal location: ``sku``, ``stock_location_external_id``,
    ``stock_level`` (on hand minus allocated, floored at 0).

    Two ERP warehouses mapped to one portal location add up: the portal refuses a repeated
    SKU and location in one batch, and a buyer can order from either. Warehouses with no
    mapping are left out (:func:`validate_inventory` has already queued them).
    """
    location = erp_inventory["warehouse_code"].map(mappings.stock_locations)
    # Floor per warehouse before adding: stock over-allocated in one warehouse cannot be sold
    # from another's.
    available = (erp_inventory["on_hand"] - erp_inventory["allocated"]).clip(lower=0)
    levels = (
        pd.DataFrame(
            {
                "sku": erp_inventory["sku"],
                "stock_location_external_id": location,
                "stock_level": available.astype("int64"),
            }
        )
        .dropna(subset=["stock_location_external_id"])
        .groupby(["sku", "stock_location_external_id"], as_index=False, sort=True)[["stock_level"]]
        .sum()
    )
    return levels[["sku", "stock_location_external_id", "stock_level"]]


def stock_changes(current: pd.DataFrame, previous_snapshot: pd.DataFrame | None) -> pd.DataFrame:
    """The rows to push: levels that are new or differ from the snapshot, and 0 for a SKU and
    location the ERP no longer lists. Columns in the batch-update-stock wire shape
    (``stock_location_external_id``, ``sku``, ``stock_level``); :func:`stock_update_rows` is
    the body.
    """
    keys = ["sku", "stock_location_external_id"]
    if previous_snapshot is None or previous_snapshot.empty:
        previous_snapshot = pd.DataFrame(
            {"sku": [], "stock_location_external_id": [], "stock_level": []}
        ).astype({"sku": object, "stock_location_external_id": object, "stock_level": "int64"})
    compared = current[[*keys, "stock_level"]].merge(
        previous_snapshot[[*keys, "stock_level"]],
        on=keys,
        how="outer",
        suffixes=("", "_before"),
        indicator=True,
    )
    vanished = compared["_merge"] == "right_only"
    compared.loc[vanished, "stock_level"] = 0
    changed = compared["stock_level"] != compared["stock_level_before"]  # NaN before: new
    push = compared[changed].astype({"stock_level": "int64"})
    return (
        push[STOCK_COLUMNS]
        .sort_values(["stock_location_external_id", "sku"])
        .reset_index(drop=True)
    )


def stock_update_rows(changes: pd.DataFrame) -> list[dict[str, Any]]:
    """The batch-update-stock body for :func:`stock_changes` rows (one dict per level)."""
    return [
        {"stock_location_external_id": location, "sku": sku, "stock_level": int(level)}
        for location, sku, level in zip(
            changes["stock_location_external_id"],
            changes["sku"],
            changes["stock_level"],
            strict=True,
        )
    ]


# --- stock locations and what the portal refused ------------------------------------------


def stock_locations_to_create(
    portal_locations: Iterable[Mapping[str, Any]], mappings: Mappings
) -> list[str]:
    """External ids of the mapped stock locations the portal lacks, sorted (create them before
    pushing stock to them)."""
    existing = {location.get("external_id") for location in portal_locations}
    return sorted(set(mappings.stock_locations.values()) - existing)


def stock_location_name(external_id: str) -> str:
    """The display name of a stock location the pipeline creates (``north`` -> ``North``)."""
    return external_id.title()


REFUSED_STOCK_COLUMNS = ["sku", "stock_location_external_id", "message"]


def refused_stock_rows(rejected: Iterable[Any]) -> pd.DataFrame:
    """The client's ``BatchResult.rejected`` of a stock push as rows: ``sku``,
    ``stock_location_external_id``, ``message`` (the portal's reason)."""
    rows = [
        (row.item.get("sku"), row.item.get("stock_location_external_id"), row.message)
        for row in rejected
    ]
    return pd.DataFrame(rows, columns=REFUSED_STOCK_COLUMNS).astype(object)


def accepted_stock(changes: pd.DataFrame, refused: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``changes`` the portal took: all but the ``refused`` (SKU, location) pairs."""
    keys = ["sku", "stock_location_external_id"]
    if refused.empty:
        return changes
    matched = changes[keys].merge(refused[keys].drop_duplicates(), how="left", indicator=True)
    return changes[(matched["_merge"] == "left_only").to_numpy()]


def refused_stock_exceptions(refused: pd.DataFrame) -> pd.DataFrame:
    """A ``PORTAL_REJECTED_RECORD`` exception per stock level the portal refused; the level
    stays different from the snapshot, so the next stock sync sends it again."""
    if refused.empty:
        return exception_frame()
    sku = refused["sku"].astype(str)
    location = refused["stock_location_external_id"].astype(str)
    return exception_frame(
        pd.DataFrame(
            {
                "entity": "inventory",
                "entity_key": sku + "@" + location,
                "account_code": None,
                "reason_code": "PORTAL_REJECTED_RECORD",
                "message": "The portal refused the stock level of "
                + sku
                + " at "
                + location
                + ": "
                + refused["message"].astype(str)
                + ". Check the SKU and location; the next stock sync sends it again.",
                "payload": None,
            }
        )
    )
