"""Price lists, ERP → portal: group lists, customer-specific lists and quantity breaks; and the
price probe that asks the portal what buyers would pay.

What the portal holds (the decision operators should know): SparkLayer prices a buyer from the
first of their lists that prices a SKU, the ERP at the lowest break over the account's list and
its parent. So every customer-specific list is pushed as its *effective* breaks: for each SKU it
prices, every break quantity of it and its group list, at the ERP's price there
(``domain.price_lists.effective_price_list_items``). Group lists are pushed as the ERP holds them.

Sequencing:
- **Real time for accuracy**: a sensor watches the ERP's price lists and pushes a change within
  minutes, sending only the SKUs whose breaks changed, in batches of 500 (the API maximum).
- **Batched for load**: every night a full comparison reads the portal's actual prices back and
  repairs any drift (e.g. a price edited by hand in the portal).
- **Order of operations**: missing lists are created first, then filled, and only then are
  customers pointed at them (``portal_customers`` runs after this asset), so no buyer ever
  sees an empty list.
- **Data limits**: a sync that would take the portal past SparkLayer's hard limit on price lists
  or priced SKUs creates no new list, or prices no new SKU, that run (a ``PORTAL_LIMIT_EXCEEDED``
  exception says which); past the recommended limit it only warns in the run's metadata.
- **Price probe** (hourly): ``portal_price_probe`` asks the portal, through
  ``fetch-customer-pricing``, what a sample of accounts would pay at each break and files a
  ``PORTAL_PRICE_DIFFERS`` exception per account and SKU where it is not the ERP's price.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type
from pydantic import Field

from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import (
    PipelineResource,
)
from b2b_pipeline.defs.systems import (
    audit_events,
    column_schema_metadata,
    file_exceptions,
    report_sync,
)
from b2b_pipeline.domain import portal_limits as limits
from b2b_pipeline.domain import price_lists as rules
from b2b_pipeline.domain import price_probe as probe
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
PORTAL_PRICE_PROBLEMS = (
    "price_list",
    frozenset({"PORTAL_REJECTED_ROW", "PRICE_LIST_SYNC_FAILED", "PORTAL_LIMIT_EXCEEDED"}),
)


class PriceSyncConfig(dg.Config):
    """``full_comparison`` reads the portal's actual prices instead of trusting the snapshot of
    what was last pushed: slower (one read per 1,000 SKUs), and it repairs drift."""

    full_comparison: bool = False


@dg.asset(
    group_name=ERP,
    kinds={"sqlalchemy", "pandas"},
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
    on_portal = set(portal_lists["slug"]) if "slug" in portal_lists else set()

    if config.full_comparison:
        # Lists about to be created hold nothing yet: only the others are read back.
        previous = read_portal_pricing(
            portal, [slug for slug in desired_lists["slug"] if slug in on_portal]
        )
    else:
        previous = systems.state.price_snapshot()
    if erp_price_list_items.empty and len(previous):
        # An empty extract is far more likely a broken ERP read than a merchant with no prices.
        raise dg.Failure(
            "The ERP returned no prices at all while the portal holds some: refusing to remove "
            "every price from the portal. Check the ERP's price lists, then rerun."
        )

    # The portal's data limits, before anything is sent (contract §1).
    checked = limits.check_limits(
        {
            "price_lists": limits.projected_count(on_portal, desired_lists["slug"]),
            "products": limits.priced_skus_after_sync(
                erp_price_list_items, previous, desired_lists["slug"], erp_held_back_prices
            ),
        }
    )
    refused = limits.exceeded(checked)
    for warning in limits.limit_warnings(checked):
        context.log.warning(warning)
    if "price_lists" in refused:
        to_create = to_create.iloc[0:0]
    for row in to_create.itertuples(index=False):
        portal.create_price_list(row.slug, row.name, row.currency_code)

    # What the portal must hold is the effective lists (customer-specific lists carry the ERP's
    # answer at every break), compared with what it holds.
    changes = rules.price_changes(
        erp_price_list_items,
        previous,
        held_back=erp_held_back_prices,
        erp_price_lists=erp_price_lists,
    )
    held_by_limit = pd.Series(False, index=changes.index)
    if "price_lists" in refused:  # lists that could not be created cannot be filled
        held_by_limit |= ~changes["price_list_slug"].isin(on_portal | set(to_create["slug"]))
    if "products" in refused:
        held_by_limit |= limits.new_skus(changes, previous)
    changes = changes[~held_by_limit].reset_index(drop=True)

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

    exceptions = limits.limit_exceptions(checked, entity="price_list")
    reportable = rejected.dropna(subset=["message"])
    if not reportable.empty:
        customers = desired_portal_customers(
            _erp_customers_for(systems), systems.mappings, erp_price_lists=erp_price_lists
        )
        exceptions = pd.concat(
            [
                exceptions,
                rules.price_sync_exceptions(reportable, customers_by_price_list(customers)),
            ],
            ignore_index=True,
        )
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
            "customer_specific_lists": int(erp_price_lists["parent_code"].notna().sum()),
            "portal_limits": dg.MetadataValue.json(
                {check.limit: {"count": check.count, "hard": check.hard} for check in checked}
            ),
            "refused_by_portal_limit": dg.MetadataValue.json(sorted(refused)),
            "skus_held_by_portal_limit": int(held_by_limit.sum()),
            "portal_limit_warnings": dg.MetadataValue.json(limits.limit_warnings(checked)),
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
    """What the portal actually holds for these lists (the nightly full comparison); a list the
    portal does not have holds nothing."""
    from b2b_pipeline.connectors.sparklayer.errors import NotFoundError

    rows = []
    for slug in slugs:
        try:
            rows.extend(
                (slug, item["sku"], int(b["quantity"]), float(b["price"]))
                for item in portal.iter_pricing(slug)
                for b in item.get("pricing") or []
            )
        except NotFoundError:  # not created yet (or refused by a data limit)
            continue
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


# --- the price probe ----------------------------------------------------------------------


class PriceProbeConfig(dg.Config):
    """How much the hourly probe asks the portal. Every active account with its own price list
    is probed on every run; ``probe_share`` of the others too, a different slice each day;
    ``max_skus_per_account`` bounds the SKUs asked per account (at every break quantity)."""

    probe_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of group-list accounts probed per day."
    )
    max_skus_per_account: int = Field(
        default=20, ge=1, description="Most SKUs asked per account and run."
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    # Lineage: it checks what the price and customer syncs left on the portal.
    deps=[portal_price_lists, "portal_customers"],
    description="Asks the portal (fetch-customer-pricing) what a sample of accounts would pay "
    "for their priced SKUs at each break, compares it with the ERP's price rule, and queues a "
    "PORTAL_PRICE_DIFFERS exception per account and SKU that differs, before a buyer orders "
    "at that price; a later probe that finds them equal resolves it.",
)
def portal_price_probe(
    context: dg.AssetExecutionContext,
    config: PriceProbeConfig,
    erp_customers: pd.DataFrame,
    erp_price_lists: pd.DataFrame,
    erp_price_list_items: pd.DataFrame,
    erp_held_back_prices: pd.DataFrame,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    portal = systems.portal
    calls_before = portal.stats.calls
    today = datetime.now(UTC).date()
    # Open differences are asked again on every run, so each closes as soon as it is repaired.
    recheck = probe.open_probe_pairs(systems.audit.exceptions(status=["open", "approved"]))
    accounts = probe.probe_accounts(
        erp_customers, erp_price_lists, on=today, share=config.probe_share, recheck=recheck
    )
    lines = probe.probe_lines(
        accounts,
        erp_price_list_items,
        on=today,
        max_skus=config.max_skus_per_account,
        held_back=erp_held_back_prices,
        recheck=recheck,
    )

    portal_prices, not_found = _ask_portal(portal, lines)
    answered = lines[~lines["account_code"].isin(not_found)]
    compared = probe.compare_prices(
        answered,
        portal_prices,
        customers=erp_customers,
        price_lists=erp_price_lists,
        items=erp_price_list_items,
    )
    exceptions = probe.probe_exceptions(compared, accounts)
    opened = file_exceptions(systems, exceptions)
    resolved = systems.audit.resolve_exceptions_for(
        probe.PROBE_ENTITY, probe.agreeing_keys(compared), systems.run_id
    )
    calls = portal.stats.calls - calls_before
    differing = int(compared["differs"].astype(bool).sum()) if len(compared) else 0
    systems.audit.record_event(
        "price_probe",
        today.isoformat(),
        "probed",
        run_id=systems.run_id,
        category="PRICING" if len(exceptions) else None,
        detail={
            "accounts": int(answered["account_code"].nunique()),
            "lines": len(answered),
            "differing_lines": differing,
            "differing_skus": len(exceptions),
            "resolved": resolved,
            "api_calls": calls,
        },
    )
    if len(exceptions):
        context.log.warning(
            f"The portal would charge {len(exceptions)} account/SKU pair(s) a price that is not "
            "the ERP's; see the PRICING exceptions."
        )
    return dg.MaterializeResult(
        metadata={
            "probe_date": today.isoformat(),
            "probe_share": config.probe_share,
            "max_skus_per_account": config.max_skus_per_account,
            "accounts_probed": int(answered["account_code"].nunique()),
            "accounts_with_own_list": int(
                accounts.loc[~accounts["account_code"].isin(not_found), "own_list"].sum()
            ),
            "accounts_not_found": dg.MetadataValue.json(not_found[:50]),
            "open_differences_rechecked": len(recheck),
            "lines_probed": len(answered),
            "lines_differing": differing,
            "skus_differing": len(exceptions),
            "exceptions_opened": int(opened["is_new"].sum()) if len(opened) else 0,
            "exceptions_resolved": resolved,
            # What the probe costs against the portal's allowance (token requests included).
            "api_calls": calls,
            "rate_limit_wait_seconds": round(portal.stats.rate_limit_wait_seconds, 3),
        },
    )


def _ask_portal(portal, lines: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The portal's price for every line, one fetch-customer-pricing call per account (the
    client splits at the API's line maximum): (``account_code``, ``sku``, ``quantity``,
    ``unit_price``, ``error`` rows; accounts the portal does not know)."""
    from b2b_pipeline.connectors.sparklayer.errors import InvalidRequestError, NotFoundError

    answers, not_found = [], []
    for account, asked in lines.groupby("account_code", sort=True):
        try:
            priced = portal.fetch_customer_pricing(
                account,
                [
                    {"sku": sku, "quantity": int(quantity)}
                    for sku, quantity in zip(asked["sku"], asked["quantity"], strict=True)
                ],
                # ERP-created customers carry the account code as external_id [assumed: a
                # company mapped by accounting_id only is not found this way, and is listed].
                lookup_by="platform",
            )
        except (InvalidRequestError, NotFoundError):  # unknown to the portal, or no lists yet
            not_found.append(account)
            continue
        answers.append(pd.DataFrame(priced).assign(account_code=account))
    if not answers:
        return pd.DataFrame(columns=[*probe.PROBE_LINE_COLUMNS, "unit_price", "error"]), not_found
    return pd.concat(answers, ignore_index=True), not_found


price_probe_job = dg.define_asset_job(
    "price_probe_job",
    # The ERP extracts ride along: the probe compares with the ERP's prices as they are now.
    selection=dg.AssetSelection.assets(erp_products, erp_price_data, portal_price_probe)
    | dg.AssetSelection.assets("erp_customers"),
    description="Ask the portal what a sample of accounts would pay and queue a PRICING "
    "exception wherever it is not the ERP's price.",
)
