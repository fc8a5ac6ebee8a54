"""Customers, ERP → portal: accounts, groups, credit hold and release.

The ERP is the system of record for customer accounts. ``erp_customers`` reads and checks them;
``portal_customer_groups`` makes sure every mapped group (and the on-hold group, with ordering
off) exists; ``portal_customers`` creates or updates each trade account in the portal by its
ERP account code (``accounting_id``), moving held, blocked or inactive accounts to the on-hold
group with a credit limit of 0, and restoring them on release. The steps are the flows of
``flows/customer_sync.py``; these assets declare the systems they use and show what happened.
"""

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from b2b_pipeline.defs.customers.columns import column_schema_metadata
from b2b_pipeline.defs.groups import ERP, PORTAL_SYNC
from b2b_pipeline.defs.resources import (
    AuditResource,
    ErpResource,
    MappingsResource,
    SparkLayerResource,
)
from b2b_pipeline.domain.schemas.master_data import ErpCustomers
from b2b_pipeline.flows import customer_sync


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
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.Output[pd.DataFrame]:
    result = customer_sync.check_erp_customers(
        erp=erp.gateway, audit=audit.store, mappings=mappings.mappings, run_id=context.run.run_id
    )
    return dg.Output(
        result.customers,
        metadata={
            "dagster/row_count": len(result.customers),
            "erp_accounts": result.erp_accounts,
            "held_back": result.held_back,
            "new_exceptions": result.new_exceptions,
            "on_credit_hold": result.on_credit_hold,
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
    context: dg.AssetExecutionContext,
    sparklayer: SparkLayerResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.MaterializeResult:
    result = customer_sync.sync_customer_groups(
        portal=sparklayer.client,
        audit=audit.store,
        mappings=mappings.mappings,
        run_id=context.run.run_id,
    )
    for warning in result.limit_warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "groups": result.groups,
            "created": dg.MetadataValue.json(result.created),
            "refused_by_portal_limit": dg.MetadataValue.json(result.refused_by_portal_limit),
            "portal_limit_warnings": dg.MetadataValue.json(result.limit_warnings),
        }
    )


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
    sparklayer: SparkLayerResource,
    erp: ErpResource,
    audit: AuditResource,
    mappings: MappingsResource,
) -> dg.MaterializeResult:
    result = customer_sync.sync_portal_customers(
        portal=sparklayer.client,
        erp=erp.gateway,
        audit=audit.store,
        state=audit.state,
        mappings=mappings.mappings,
        run_id=context.run.run_id,
        erp_customers=erp_customers,
    )
    for warning in result.limit_warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "accounts": result.accounts,
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "refused_by_portal": result.refused_by_portal,
            "credit_holds_applied": result.credit_holds_applied,
            "credit_holds_released": result.credit_holds_released,
            "api_calls": result.api_calls,
            "refused_by_portal_limit": dg.MetadataValue.json(result.refused_by_portal_limit),
            "held_by_portal_limit": result.held_by_portal_limit,
            "portal_limit_warnings": dg.MetadataValue.json(result.limit_warnings),
        },
    )


customer_sync_job = dg.define_asset_job(
    "customer_sync_job",
    selection=dg.AssetSelection.assets(erp_customers, portal_customer_groups, portal_customers),
    description="ERP customer accounts, groups and credit status to the portal.",
)
