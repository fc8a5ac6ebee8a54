"""The price probe: ask the portal what a sample of accounts would pay, and queue a
``PORTAL_PRICE_DIFFERS`` exception (PRICING) per account and SKU where it is not the ERP's
price, before a buyer orders at it; a later probe that finds them equal resolves it.

The sample and the comparison are the domain's (``domain/price_probe.py``); this flow asks
the portal (one ``fetch-customer-pricing`` call per account), files and resolves, and says
what the probe cost against the portal's allowance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandas as pd

from b2b_pipeline.domain import price_probe as probe
from b2b_pipeline.flows.ports import AuditTrail, Portal
from b2b_pipeline.flows.recording import file_exceptions, new_exception_count


@dataclass(frozen=True)
class PriceProbeResult:
    """What one probe asked and found, as the asset shows it."""

    probe_date: date
    accounts_probed: int
    accounts_with_own_list: int
    accounts_not_found: list[str]
    open_differences_rechecked: int
    lines_probed: int
    lines_differing: int
    skus_differing: int
    exceptions_opened: int
    exceptions_resolved: int
    # What the probe cost against the portal's allowance (token requests included).
    api_calls: int
    rate_limit_wait_seconds: float
    warnings: list[str] = field(default_factory=list)


def _ask_portal(portal: Portal, lines: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The portal's price for every line, one call per account; and the accounts the portal
    does not know (or that have no lists there yet)."""
    from b2b_pipeline.connectors.sparklayer.errors import InvalidRequestError, NotFoundError

    answers: dict[str, list[dict[str, object]]] = {}
    not_found: list[str] = []
    for account, asked in probe.pricing_requests(lines).items():
        try:
            answers[account] = portal.fetch_customer_pricing(
                account,
                asked,
                # ERP-created customers carry the account code as external_id [assumed: a
                # company mapped by accounting_id only is not found this way, and is listed].
                lookup_by="platform",
            )
        except (InvalidRequestError, NotFoundError):
            not_found.append(account)
    return probe.portal_answers(answers), not_found


def run_price_probe(
    *,
    portal: Portal,
    audit: AuditTrail,
    run_id: str,
    customers: pd.DataFrame,
    price_lists: pd.DataFrame,
    items: pd.DataFrame,
    held_back: pd.DataFrame,
    probe_share: float,
    max_skus_per_account: int,
    today: date | None = None,
) -> PriceProbeResult:
    """Probe the accounts of the day (``customers``, ``price_lists``, ``items``, ``held_back``:
    the clean ERP extracts) and file what differs."""
    calls_before = portal.stats.calls
    waited_before = portal.stats.rate_limit_wait_seconds
    today = today or datetime.now(UTC).date()
    # Open differences are asked again on every run, so each closes as soon as it is repaired.
    recheck = probe.open_probe_pairs(audit.exceptions(status=["open", "approved"]))
    accounts = probe.probe_accounts(
        customers, price_lists, on=today, share=probe_share, recheck=recheck
    )
    lines = probe.probe_lines(
        accounts,
        items,
        on=today,
        max_skus=max_skus_per_account,
        held_back=held_back,
        recheck=recheck,
    )
    portal_prices, not_found = _ask_portal(portal, lines)
    answered = lines[~lines["account_code"].isin(not_found)]
    compared = probe.compare_prices(
        answered, portal_prices, customers=customers, price_lists=price_lists, items=items
    )
    exceptions = probe.probe_exceptions(compared, accounts)
    opened = file_exceptions(audit, exceptions, run_id=run_id)
    resolved = audit.resolve_exceptions_for(
        probe.PROBE_ENTITY, probe.agreeing_keys(compared), run_id
    )
    calls = portal.stats.calls - calls_before
    differing = int(compared["differs"].astype(bool).sum()) if len(compared) else 0
    probed = int(answered["account_code"].nunique())
    audit.record_event(
        "price_probe",
        today.isoformat(),
        "probed",
        run_id=run_id,
        category="PRICING" if len(exceptions) else None,
        detail={
            "accounts": probed,
            "lines": len(answered),
            "differing_lines": differing,
            "differing_skus": len(exceptions),
            "resolved": resolved,
            "api_calls": calls,
        },
    )
    warnings = (
        [
            f"The portal would charge {len(exceptions)} account/SKU pair(s) a price that is "
            "not the ERP's; see the PRICING exceptions."
        ]
        if len(exceptions)
        else []
    )
    return PriceProbeResult(
        probe_date=today,
        accounts_probed=probed,
        accounts_with_own_list=int(
            accounts.loc[~accounts["account_code"].isin(not_found), "own_list"].sum()
        ),
        accounts_not_found=not_found,
        open_differences_rechecked=len(recheck),
        lines_probed=len(answered),
        lines_differing=differing,
        skus_differing=len(exceptions),
        exceptions_opened=new_exception_count(opened),
        exceptions_resolved=resolved,
        api_calls=calls,
        rate_limit_wait_seconds=round(portal.stats.rate_limit_wait_seconds - waited_before, 3),
        warnings=warnings,
    )
