"""Customers, ERP → portal: accounts, groups, credit hold and release.

The ERP is the system of record for customer accounts. ``erp_customers`` reads and checks them;
``portal_customer_groups`` makes sure every mapped group (and the on-hold group, with ordering
off) exists; ``portal_customers`` creates or updates each trade account in the portal by its
ERP account code (``accounting_id``), moving held, blocked or inactive accounts to the on-hold
group with a credit limit of 0, and restoring them on release.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import PipelineResource
from b2b_pipeline.defs.systems import (
    audit_events,
    column_schema_metadata,
    file_exceptions,
    report_sync,
)
from b2b_pipeline.domain import customers as rules
from b2b_pipeline.domain import portal_limits as limits
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.price_lists import validate_price_lists
from b2b_pipeline.domain.schemas.master_data import ErpCustomers

# What each step checks in full on every run (so a problem it no longer finds is resolved).
ERP_CUSTOMER_PROBLEMS = (
    "customer",
    frozenset({"INVALID_ERP_RECORD", "UNMAPPED_CUSTOMER_GROUP", "UNMAPPED_TAX_CODE"}),
)
PORTAL_CUSTOMER_PROBLEMS = (
    "customer",
    frozenset({"PORTAL_REJECTED_RECORD", "PORTAL_LIMIT_EXCEEDED"}),
)
PORTAL_GROUP_PROBLEMS = ("customer_group", frozenset({"PORTAL_LIMIT_EXCEEDED"}))


@dg.asset(
    group_name=ERP,
    kinds={"sqlalchemy", "pandas"},
    dagster_type=pandera_schema_to_dagster_type(ErpCustomers),
    metadata=column_schema_metadata(ErpCustomers),
    description="ERP customer accounts that passed every rule (known group and tax code, "
    "existing price list, unique account code). Accounts that failed wait in the exception "
    "queue with the rule they broke; the others flow on.",
)
def erp_customers(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
) -> dg.Output:
    systems = pipeline.open(context.run.run_id)
    raw = systems.erp.read_customers()
    lists, _ = validate_price_lists(systems.erp.read_price_lists(), systems.mappings)
    clean, problems = rules.validate_customers(raw, systems.mappings, price_lists=lists)
    opened = file_exceptions(systems, problems, clears=ERP_CUSTOMER_PROBLEMS)
    return dg.Output(
        clean,
        metadata={
            "dagster/row_count": len(clean),
            "erp_accounts": len(raw),
            "held_back": len(problems),
            "new_exceptions": int(opened["is_new"].sum()) if len(opened) else 0,
            "on_credit_hold": int(clean["credit_hold"].sum()) if len(clean) else 0,
        },
    )


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    description="The portal's customer groups: one per mapped ERP group, plus the on-hold "
    "group whose rules switch ordering and Pay on Account off (none created past the portal's "
    "hard limit on groups).",
)
def portal_customer_groups(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    systems = pipeline.open(context.run.run_id)
    wanted = rules.customer_groups_needed(systems.mappings)
    existing = {g.get("slug") for g in systems.portal.list_customer_groups()}
    checked = limits.check_limits(
        {"customer_groups": limits.projected_count(existing, (g["slug"] for g in wanted))}
    )
    for warning in limits.limit_warnings(checked):
        context.log.warning(warning)
    refused = limits.exceeded(checked)
    created = [
        g["slug"] for g in wanted if g["slug"] not in existing and "customer_groups" not in refused
    ]
    for group in wanted:
        if group["slug"] in created:
            systems.portal.create_customer_group(group)
    file_exceptions(
        systems,
        limits.limit_exceptions(checked, entity="customer_group"),
        clears=PORTAL_GROUP_PROBLEMS,
    )
    return dg.MaterializeResult(
        metadata={
            "groups": len(wanted),
            "created": dg.MetadataValue.json(created),
            "refused_by_portal_limit": dg.MetadataValue.json(sorted(refused)),
            "portal_limit_warnings": dg.MetadataValue.json(limits.limit_warnings(checked)),
        }
    )


def _filled_lists_only(desired: pd.DataFrame, filled: set[str]) -> pd.DataFrame:
    """A customer is pointed at a list only once the list holds prices (never an empty list)."""
    if desired.empty:
        return desired
    desired = desired.copy()
    desired["price_lists"] = desired["price_lists"].map(
        lambda slugs: [s for s in (slugs or []) if s in filled]
    )
    return desired


@dg.asset(
    group_name=PORTAL_SYNC,
    kinds={"sparklayer"},
    deps=["portal_customer_groups", "portal_price_lists"],
    description="Every ERP account in the portal, matched by accounting_id = ERP account code: "
    "group, price lists, discount, tax exemption, credit limit and terms. Held, blocked or "
    "inactive accounts sit in the on-hold group (ordering off) with a credit limit of 0.",
)
def portal_customers(
    context: dg.AssetExecutionContext,
    erp_customers: pd.DataFrame,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError

    started = datetime.now(UTC)
    systems = pipeline.open(context.run.run_id)
    lists, _ = validate_price_lists(systems.erp.read_price_lists(), systems.mappings)
    desired = rules.desired_portal_customers(erp_customers, systems.mappings, erp_price_lists=lists)
    desired = _filled_lists_only(desired, systems.state.filled_price_lists())
    portal = pd.DataFrame(list(systems.portal.iter_customers()))
    changes = rules.customer_changes(desired, portal)
    moves = rules.holds_and_releases(desired, portal, on_hold_group=systems.mappings.on_hold_group)

    to_send = changes[changes["action"] != "unchanged"]
    # The portal's data limits, before anything is sent (contract §1).
    creates = int((to_send["action"] == "create").sum())
    checked = limits.check_limits({"customers": len(portal) + creates})
    for warning in limits.limit_warnings(checked):
        context.log.warning(warning)
    limit_refused = limits.exceeded(checked)
    too_many_addresses = pd.Series(
        limits.addresses_over_limit(to_send["body"]), index=to_send.index, dtype=bool
    )
    held_by_limit = too_many_addresses.copy()
    if "customers" in limit_refused:  # no new customer; updates (holds included) still go
        held_by_limit |= to_send["action"] == "create"
    limit_problems = pd.concat(
        [
            limits.limit_exceptions(checked, entity="customer"),
            limits.address_exceptions(
                pd.DataFrame(
                    {
                        "account_code": to_send.loc[too_many_addresses, "account_code"],
                        "addresses": [
                            len(body["addresses"])
                            for body in to_send.loc[too_many_addresses, "body"]
                        ],
                    }
                )
            ),
        ],
        ignore_index=True,
    )
    to_send = to_send[~held_by_limit]
    refused = []
    sent = []
    for row in to_send.itertuples(index=False):  # the customers API takes one record per call
        try:
            systems.portal.put_customer(row.body, lookup_by=row.lookup_by)
            sent.append(row.account_code)
        except SparkLayerError as exc:
            refused.append(
                {
                    "entity": "customer",
                    "entity_key": row.account_code,
                    "account_code": row.account_code,
                    "reason_code": "PORTAL_REJECTED_RECORD",
                    "message": f"The portal refused customer {row.account_code}: "
                    f"{exc.detail or exc.title}. Correct the account in the ERP; the next "
                    "sync sends it again.",
                    "payload": None,
                }
            )
    done = to_send[to_send["account_code"].isin(sent)]
    events = [
        audit_events(
            done,
            run_id=systems.run_id,
            entity="customer",
            key="account_code",
            action=done["action"].map({"create": "created", "update": "pushed"}),
            detail_columns=["changed_fields", "matched_by"],
        )
    ]
    if not moves.empty:
        applied = moves[moves["account_code"].isin(sent)]
        events.append(
            audit_events(
                applied,
                run_id=systems.run_id,
                entity="customer",
                key="account_code",
                action=applied["action"],
                category="AUTHORISATION",
                detail_columns=[c for c in ("reason", "group") if c in applied.columns],
            )
        )
    systems.record(events)
    sent_desired = desired[desired["account_code"].isin(sent)]
    if not sent_desired.empty:
        systems.audit.record_customer_lists(
            sent_desired[["account_code", "price_lists", "discount_percentage"]], systems.run_id
        )
    refused_frame = pd.concat([exception_frame(refused), limit_problems], ignore_index=True)
    file_exceptions(systems, refused_frame, clears=PORTAL_CUSTOMER_PROBLEMS)
    if sent:
        systems.audit.resolve_exceptions_for("customer", sent, systems.run_id)
    report_sync(
        systems,
        "customers",
        started_at=started,
        records_failed=len(refused) + int(held_by_limit.sum()),
        errors=refused_frame,
        entities=("customer",),
    )
    counts = changes["action"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "accounts": len(desired),
            "created": len(done[done["action"] == "create"]),
            "updated": len(done[done["action"] == "update"]),
            "unchanged": int(counts.get("unchanged", 0)),
            "refused_by_portal": len(refused),
            "credit_holds_applied": int((moves["action"] == "credit_hold_applied").sum())
            if not moves.empty
            else 0,
            "credit_holds_released": int((moves["action"] == "credit_hold_released").sum())
            if not moves.empty
            else 0,
            "api_calls": len(to_send),
            "refused_by_portal_limit": dg.MetadataValue.json(sorted(limit_refused)),
            "held_by_portal_limit": int(held_by_limit.sum()),
            "portal_limit_warnings": dg.MetadataValue.json(limits.limit_warnings(checked)),
        },
    )


customer_sync_job = dg.define_asset_job(
    "customer_sync_job",
    selection=dg.AssetSelection.assets(erp_customers, portal_customer_groups, portal_customers),
    description="ERP customer accounts, groups and credit status to the portal.",
)
