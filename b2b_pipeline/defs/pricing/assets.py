"""Price lists, ERP → portal: group lists, customer-specific lists and quantity breaks.

Sequencing (the decision operators should know):
- **Real time for accuracy**: a sensor watches the ERP's price lists and pushes a change within
  minutes, sending only the SKUs whose breaks changed, in batches of 500 (the API maximum).
- **Batched for load**: every night a full comparison reads the portal's actual prices back and
  repairs any drift (e.g. a price edited by hand in the portal).
- **Order of operations**: missing lists are created first, then filled, and only then are
  customers pointed at them (``portal_customers`` runs after this asset), so no buyer ever
  sees an empty list.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import (
    PipelineResource,
)
from b2b_pipeline.defs.systems import (
    AUDIT_WRITER_POOL,
    audit_events,
    column_schema_metadata,
    file_exceptions,
    report_sync,
)
from b2b_pipeline.domain import price_lists as rules
from b2b_pipeline.domain.customers import customers_by_price_list, desired_portal_customers
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.inventory import validate_products
from b2b_pipeline.domain.schemas.master_data import (
    ErpPriceListItems,
    ErpPriceLists,
    ErpProducts,
)

# What each step checks in full on every run (so a problem it no longer finds is resolved).
# Rows the portal refused stay different from the snapshot, so every run sends them again.
ERP_PRODUCT_PROBLEMS = ("product", frozenset({"INVALID_ERP_RECORD"}))
ERP_PRICE_PROBLEMS = ("price_list", frozenset({"INVALID_ERP_RECORD"}))
PORTAL_PRICE_PROBLEMS = ("price_list", frozenset({"PORTAL_REJECTED_ROW", "PRICE_LIST_SYNC_FAILED"}))


class PriceSyncConfig(dg.Config):
    """``full_comparison`` reads the portal's actual prices instead of trusting the snapshot of
    what was last pushed: slower (one read per 1,000 SKUs), and it repairs drift."""

    full_comparison: bool = False


@dg.asset(
    group_name=ERP,
    kinds={"sqlalchemy", "pandas"},
    pool=AUDIT_WRITER_POOL,
    dagster_type=pandera_schema_to_dagster_type(ErpProducts),
    metadata=column_schema_metadata(ErpProducts),
    description="The ERP catalogue (unique SKUs); every priced or stocked SKU must be in it.",
)
def erp_products(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
) -> dg.Output:
    systems = pipeline.open(context.run.run_id)
    raw = systems.erp.read_products()
    clean, problems = validate_products(raw, systems.mappings)
    file_exceptions(systems, problems, clears=ERP_PRODUCT_PROBLEMS)
    return dg.Output(
        clean,
        metadata={
            "dagster/row_count": len(clean),
            "active": int(clean["active"].sum()) if len(clean) else 0,
            "held_back": len(problems),
        },
    )


@dg.multi_asset(
    group_name=ERP,
    pool=AUDIT_WRITER_POOL,
    outs={
        "erp_price_lists": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            metadata=column_schema_metadata(ErpPriceLists),  # the Columns tab, as every extract
            description="ERP price lists that can be portal lists (code ≤ 30 characters, "
            "known currency, existing parent list).",
        ),
        "erp_price_list_items": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            dagster_type=pandera_schema_to_dagster_type(ErpPriceListItems),
            metadata=column_schema_metadata(ErpPriceListItems),
            description="Price breaks that passed every rule (price ≥ 0, minimum quantity ≥ "
            "1, unique list × SKU × break, SKU in the catalogue).",
        ),
        "erp_held_back_prices": dg.AssetOut(
            kinds={"sqlalchemy", "pandas"},
            description="List × SKU pairs with a broken break: the portal keeps their last "
            "good prices until the ERP is corrected (each is in the exception queue).",
        ),
    },
)
def erp_price_data(
    context: dg.AssetExecutionContext,
    erp_products: pd.DataFrame,
    pipeline: PipelineResource,
):
    systems = pipeline.open(context.run.run_id)
    lists, list_problems = rules.validate_price_lists(
        systems.erp.read_price_lists(), systems.mappings
    )
    raw_items = systems.erp.read_price_list_items()
    items, item_problems = rules.validate_price_list_items(
        raw_items, systems.mappings, price_lists=lists, products=erp_products
    )
    held_back = rules.held_back_skus(item_problems)
    file_exceptions(
        systems,
        pd.concat([list_problems, item_problems], ignore_index=True),
        clears=ERP_PRICE_PROBLEMS,
    )
    yield dg.Output(lists, "erp_price_lists", metadata={"dagster/row_count": len(lists)})
    yield dg.Output(
        items,
        "erp_price_list_items",
        metadata={"dagster/row_count": len(items), "rows_in_erp": len(raw_items)},
    )
    yield dg.Output(
        held_back, "erp_held_back_prices", metadata={"dagster/row_count": len(held_back)}
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    pool=AUDIT_WRITER_POOL,
    description="Every ERP price list in the portal with exactly the ERP's breaks: missing "
    "lists created first, then only the SKUs whose breaks changed sent, 500 per call.",
)
def portal_price_lists(
    context: dg.AssetExecutionContext,
    config: PriceSyncConfig,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError

    started = datetime.now(UTC)
    systems = pipeline.open(context.run.run_id)
    portal = systems.portal
    desired_lists = rules.desired_price_lists(erp_price_lists)
    portal_lists = pd.DataFrame(list(portal.iter_price_lists()))
    to_create = rules.lists_to_create(desired_lists, portal_lists)
    for row in to_create.itertuples(index=False):
        portal.create_price_list(row.slug, row.name, row.currency_code)

    if config.full_comparison:
        previous = read_portal_pricing(portal, desired_lists["slug"].tolist())
    else:
        previous = systems.state.price_snapshot()
    if erp_price_list_items.empty and len(previous):
        # An empty extract is far more likely a broken ERP read than a merchant with no prices.
        raise dg.Failure(
            "The ERP returned no prices at all while the portal holds some: refusing to remove "
            "every price from the portal. Check the ERP's price lists, then rerun."
        )
    changes = rules.price_changes(erp_price_list_items, previous, held_back=erp_held_back_prices)

    rejected_frames, calls = [], 0
    for slug, items in rules.pricing_batches(changes).items():
        try:
            result = portal.patch_pricing(slug, items)
        except SparkLayerError as exc:  # the whole list failed to update: say so, per list
            rejected_frames.append(
                pd.DataFrame(
                    [
                        {
                            "price_list_slug": slug,
                            "sku": None,
                            "field": None,
                            "message": exc.detail or exc.title or str(exc),
                        }
                    ]
                )
            )
            rejected_frames.append(
                pd.DataFrame(
                    {
                        "price_list_slug": slug,
                        "sku": [i["sku"] for i in items],
                        "field": None,
                        "message": None,
                    }
                )
            )
            continue
        calls += result.calls
        if result.rejected:
            rejected_frames.append(rules.rejected_pricing_rows(slug, result.rejected))
    rejected = (
        pd.concat(rejected_frames, ignore_index=True)
        if rejected_frames
        else pd.DataFrame(columns=["price_list_slug", "sku", "field", "message"])
    )
    not_applied = rejected.dropna(subset=["sku"])
    snapshot = rules.snapshot_after_push(previous, changes, not_applied)
    systems.state.replace_price_snapshot(snapshot)

    applied = _applied(changes, not_applied)
    _record_price_history(systems, applied, erp_price_lists)
    events = [
        audit_events(
            to_create,
            run_id=systems.run_id,
            entity="price_list",
            key="slug",
            action="created",
            detail_columns=["name", "currency_code"],
        ),
        audit_events(
            applied.assign(key=applied["price_list_slug"] + "/" + applied["sku"]),
            run_id=systems.run_id,
            entity="price_list",
            key="key",
            action=applied["change"].map(
                {"added": "pushed", "changed": "pushed", "removed": "removed"}
            ),
            detail_columns=["price_list_slug", "sku", "change", "pricing"],
        ),
    ]
    systems.record(events)

    exceptions = pd.DataFrame()
    reportable = rejected.dropna(subset=["message"])
    if not reportable.empty:
        customers = desired_portal_customers(
            _erp_customers_for(systems), systems.mappings, erp_price_lists=erp_price_lists
        )
        exceptions = rules.price_sync_exceptions(reportable, customers_by_price_list(customers))
    file_exceptions(systems, exceptions, clears=PORTAL_PRICE_PROBLEMS)
    report_sync(
        systems,
        "pricing",
        started_at=started,
        records_failed=len(not_applied),
        errors=exception_frame(exceptions) if len(exceptions) else None,
        entities=("price_list", "product"),
    )
    counts = changes["change"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "full_comparison": config.full_comparison,
            "lists": len(desired_lists),
            "lists_created": len(to_create),
            "skus_changed": len(changes),
            "skus_added": int(counts.get("added", 0)),
            "skus_repriced": int(counts.get("changed", 0)),
            "skus_removed": int(counts.get("removed", 0)),
            "skus_refused_by_portal": len(not_applied),
            "pricing_calls": calls,
            "minimum_pricing_calls": rules.minimum_pricing_calls(changes),
            "held_back_in_erp": len(erp_held_back_prices),
        },
    )


def _erp_customers_for(systems) -> pd.DataFrame:
    from b2b_pipeline.domain.customers import validate_customers

    clean, _ = validate_customers(systems.erp.read_customers(), systems.mappings)
    return clean


def _applied(changes: pd.DataFrame, not_applied: pd.DataFrame) -> pd.DataFrame:
    if not_applied.empty:
        return changes
    keys = changes[["price_list_slug", "sku"]].merge(
        not_applied[["price_list_slug", "sku"]].drop_duplicates(), how="left", indicator=True
    )
    return changes[(keys["_merge"] == "left_only").to_numpy()]


def _record_price_history(systems, applied: pd.DataFrame, lists: pd.DataFrame) -> None:
    """Every break pushed, with its validity from now (a removed SKU closes its validity)."""
    if applied.empty:
        return
    exploded = applied[["price_list_slug", "sku", "pricing"]].explode("pricing", ignore_index=True)
    breaks = exploded["pricing"].map(lambda b: b if isinstance(b, dict) else None)
    # One frame with nullable columns: a removed SKU (no break) is a row with NULL quantity
    # and price, which closes its validity. Built at once rather than by concatenating a frame
    # of all-NULL rows onto the breaks, which pandas deprecates (its result dtype will change).
    frame = pd.DataFrame(
        {
            "price_list_slug": exploded["price_list_slug"],
            "sku": exploded["sku"],
            "min_quantity": pd.array([b["quantity"] if b else None for b in breaks], dtype="Int64"),
            "price": pd.array([float(b["price"]) if b else None for b in breaks], dtype="Float64"),
        }
    )
    currency = (
        lists.set_index("code")["currency"] if "currency" in lists else pd.Series(dtype=object)
    )
    frame["currency"] = frame["price_list_slug"].map(currency)
    frame["pushed_at"] = datetime.now(UTC)
    systems.audit.record_prices(frame, systems.run_id)


def read_portal_pricing(portal, slugs: list[str]) -> pd.DataFrame:
    """What the portal actually holds for these lists (the nightly full comparison)."""
    rows = [
        (slug, item["sku"], int(b["quantity"]), float(b["price"]))
        for slug in slugs
        for item in portal.iter_pricing(slug)
        for b in item.get("pricing") or []
    ]
    return pd.DataFrame(rows, columns=["price_list_slug", "sku", "quantity", "price"])


price_sync_job = dg.define_asset_job(
    "price_sync_job",
    # The customer assets ride along so that a newly filled list is given to its customers in
    # the same run (a customer is pointed at a list only once it holds prices); with nothing
    # to change they send no write.
    selection=dg.AssetSelection.assets(erp_products, erp_price_data, portal_price_lists)
    | dg.AssetSelection.assets("erp_customers", "portal_customer_groups", "portal_customers"),
    description="ERP price lists and quantity breaks to the portal (only what changed), then "
    "customers pointed at any list just filled.",
)
