"""The portal's data limits (contract §1): checked before a sync sends anything.

SparkLayer publishes two thresholds per kind of record [doc]: past the *recommended* one the
portal still takes the data (we only warn, in the run's metadata); past the *hard* one it refuses
it. A sync that would take the portal past a hard limit is refused here, before the portal has
to, with one exception naming the limit, the count and what to do.

What "refused" means, per kind (a decision, written down for operators in docs/runbook.md):
nothing *new* of that kind is sent that run: no new price list, customer group or customer is
created, and no SKU new to the portal is priced. Updates to records the portal already holds go
on as usual, because they do not add to the count and some of them must never wait (a credit
hold, a price change). The address limit is per customer: a customer record that would carry
more than the limit is not sent, the others are.

The counts are projections: what the portal would hold after the sync (its records today plus
what the sync would create), computed by the caller from frames it already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import pandas as pd

from b2b_pipeline.connectors.sparklayer.wire import HARD_LIMITS
from b2b_pipeline.domain.exceptions import exception_frame, to_payload

# SparkLayer's recommended limits [doc, contract §1]; the hard ones are the client's
# (``connectors/sparklayer/wire.py``), since the portal enforces them on the wire.
RECOMMENDED_LIMITS: Final = {
    "price_lists": 10000,
    "customer_groups": 50,
    "customers": 100000,
    "products": 25000,
    "addresses": 250,
}

# How each limit reads in a message, and what an operator can do about it.
_LIMIT_WORDS: Final = {
    "price_lists": ("price lists", "no new price list was created; existing lists still update"),
    "customer_groups": (
        "customer groups",
        "no new customer group was created; customers keep their current groups",
    ),
    "customers": (
        "customers",
        "no new customer was created; existing customers (credit holds included) still update",
    ),
    "products": (
        "distinct priced SKUs (products)",
        "no SKU new to the portal was priced; prices of SKUs it already has still update",
    ),
}
_REMEDY: Final = {
    "price_lists": "Retire unused customer-specific price lists in the ERP (or merge them into "
    "group lists), or ask SparkLayer to raise the limit for this site.",
    "customer_groups": "Map fewer ERP customer groups to portal groups in the mapping file "
    "(customer_groups), or ask SparkLayer to raise the limit.",
    "customers": "Mark accounts that no longer trade as inactive in the ERP, or ask SparkLayer "
    "to raise the limit.",
    "products": "Stop pricing discontinued SKUs in the ERP, or ask SparkLayer to raise the limit.",
}


@dataclass(frozen=True)
class LimitCheck:
    """One limit against what the portal would hold after the sync."""

    limit: str  # a key of HARD_LIMITS
    count: int
    hard: int
    recommended: int | None

    @property
    def exceeded(self) -> bool:
        """Past the hard limit: the portal would refuse it, so the sync must not send it."""
        return self.count > self.hard

    @property
    def past_recommended(self) -> bool:
        """Past the recommended limit only: allowed, worth a warning."""
        return not self.exceeded and self.recommended is not None and self.count > self.recommended

    def warning(self) -> str:
        words = _LIMIT_WORDS.get(self.limit, (self.limit, ""))[0]
        return (
            f"The portal would hold {self.count:,} {words}, past SparkLayer's recommended "
            f"{self.recommended:,} (hard limit {self.hard:,}): it still works, but plan to "
            "reduce it."
        )


def check_limits(counts: Mapping[str, int]) -> list[LimitCheck]:
    """Each counted limit checked, in the order given. ``counts``: limit name -> projected
    count (names are keys of :data:`HARD_LIMITS`; an unknown name is a programming error)."""
    unknown = set(counts) - set(HARD_LIMITS)
    if unknown:
        raise KeyError(f"no portal limit named {sorted(unknown)}; known: {sorted(HARD_LIMITS)}")
    return [
        LimitCheck(
            limit=name,
            count=int(count),
            hard=int(HARD_LIMITS[name]),
            recommended=RECOMMENDED_LIMITS.get(name),
        )
        for name, count in counts.items()
    ]


def exceeded(checks: Iterable[LimitCheck]) -> set[str]:
    """Names of the limits the sync would pass (send nothing new of those kinds)."""
    return {check.limit for check in checks if check.exceeded}


def limit_warnings(checks: Iterable[LimitCheck]) -> list[str]:
    """One sentence per limit past its recommended value but within the hard one."""
    return [check.warning() for check in checks if check.past_recommended]


def limit_key(limit: str) -> str:
    """The exception key of a whole-portal limit (one open exception per limit and entity)."""
    return f"portal limit: {limit}"


def limit_exceptions(checks: Iterable[LimitCheck], *, entity: str) -> pd.DataFrame:
    """A ``PORTAL_LIMIT_EXCEEDED`` exception (category DATA) per limit the sync would pass.

    ``entity`` is the entity of the sync that checks it (``price_list``, ``customer_group``,
    ``customer``), so that sync resolves it once a later run is back within the limit.
    """
    rows = []
    for check in checks:
        if not check.exceeded:
            continue
        words, held = _LIMIT_WORDS[check.limit]
        rows.append(
            {
                "entity": entity,
                "entity_key": limit_key(check.limit),
                "reason_code": "PORTAL_LIMIT_EXCEEDED",
                "message": (
                    f"Portal limit reached: this sync would leave the portal with "
                    f"{check.count:,} {words}, over SparkLayer's hard limit of {check.hard:,}, "
                    f"so {held}. {_REMEDY[check.limit]} The sync resumes by itself once it is "
                    "back within the limit."
                ),
                "payload": to_payload(
                    {"limit": check.limit, "count": check.count, "hard_limit": check.hard}
                ),
            }
        )
    return exception_frame(rows)


def projected_count(existing: Iterable[object], wanted: Iterable[object]) -> int:
    """How many distinct records the portal holds once the sync has created what it lacks."""
    return len(set(existing) | set(wanted))


def priced_skus_after_sync(
    erp_items: pd.DataFrame,
    portal_items: pd.DataFrame | None,
    erp_list_codes: Iterable[str],
    held_back: pd.DataFrame | None = None,
) -> int:
    """Distinct SKUs priced on the portal after a price sync (the ``products`` limit).

    The ERP's SKUs, plus what the sync leaves alone: SKUs on portal lists the ERP does not
    manage, and held-back (list, SKU) pairs, whose last good prices stay on the portal.
    ``portal_items``: ``price_list_slug``, ``sku`` (the snapshot or the portal read back).
    """
    skus = [pd.Series(erp_items["sku"].unique())]
    if portal_items is not None and len(portal_items):
        unmanaged = ~portal_items["price_list_slug"].isin(list(erp_list_codes))
        skus.append(pd.Series(portal_items.loc[unmanaged, "sku"].unique()))
    if held_back is not None and len(held_back):
        skus.append(held_back["sku"])
    return int(pd.concat(skus, ignore_index=True).nunique())


def new_skus(changes: pd.DataFrame, portal_items: pd.DataFrame | None) -> pd.Series:
    """Per change-set row: True when it prices a SKU the portal prices on no list yet (what a
    sync past the ``products`` limit must not send)."""
    known: Iterable[object] = (
        portal_items["sku"].unique() if portal_items is not None and len(portal_items) else []
    )
    return (changes["change"] == "added") & ~changes["sku"].isin(known)


def addresses_over_limit(bodies: Iterable[Mapping[str, object] | None]) -> list[bool]:
    """Per customer body about to be PUT: True when it carries more addresses than the portal
    takes for one customer (that record alone is held back)."""
    hard = int(HARD_LIMITS["addresses"])
    return [
        isinstance(body, Mapping)
        and isinstance(addresses := body.get("addresses"), list)
        and len(addresses) > hard
        for body in bodies
    ]


def address_exceptions(accounts: pd.DataFrame) -> pd.DataFrame:
    """``PORTAL_LIMIT_EXCEEDED`` per customer whose record has too many addresses.

    ``accounts``: ``account_code``, ``addresses`` (how many the record would carry).
    """
    hard = int(HARD_LIMITS["addresses"])
    rows = [
        {
            "entity": "customer",
            "entity_key": account,
            "account_code": account,
            "reason_code": "PORTAL_LIMIT_EXCEEDED",
            "message": (
                f"Customer {account} has {count:,} addresses in the portal, over SparkLayer's "
                f"limit of {hard:,} per customer, so its record was not updated this run. "
                "Remove old delivery addresses in the portal; the next sync sends the record."
            ),
            "payload": to_payload({"limit": "addresses", "count": count, "hard_limit": hard}),
        }
        for account, count in zip(accounts["account_code"], accounts["addresses"], strict=True)
    ]
    return exception_frame(rows)


# --- what each sync holds back ------------------------------------------------------------


@dataclass(frozen=True)
class HeldByLimits:
    """A sync's limit checks and what they hold back.

    ``held``: per row of the frame checked, True when the row is not sent this run;
    ``exceptions``: the ``PORTAL_LIMIT_EXCEEDED`` rows to queue.
    """

    checked: list[LimitCheck]
    held: pd.Series
    exceptions: pd.DataFrame

    @property
    def refused(self) -> set[str]:
        return exceeded(self.checked)

    @property
    def warnings(self) -> list[str]:
        return limit_warnings(self.checked)


def customer_limits(to_send: pd.DataFrame, *, on_portal: int) -> HeldByLimits:
    """The limits of a customer sync over its PUTs (``to_send``: ``account_code``, ``action``,
    ``body``), with the portal holding ``on_portal`` customers now.

    Past the customer limit no new customer is created, while updates (credit holds included)
    still go; a record carrying more addresses than the portal takes is held alone.
    """
    creates = int((to_send["action"] == "create").sum())
    checked = check_limits({"customers": on_portal + creates})
    too_many = pd.Series(addresses_over_limit(to_send["body"]), index=to_send.index, dtype=bool)
    held = too_many.copy()
    if "customers" in exceeded(checked):
        held |= to_send["action"] == "create"
    over = to_send.loc[too_many]
    problems = pd.concat(
        [
            limit_exceptions(checked, entity="customer"),
            address_exceptions(
                pd.DataFrame(
                    {
                        "account_code": over["account_code"],
                        # Few rows: only records over the address limit.
                        "addresses": [len(body["addresses"]) for body in over["body"]],
                    }
                )
            ),
        ],
        ignore_index=True,
    )
    return HeldByLimits(checked=checked, held=held, exceptions=problems)


def price_list_limits(
    erp_items: pd.DataFrame,
    portal_items: pd.DataFrame | None,
    *,
    desired_slugs: Iterable[str],
    lists_on_portal: set[str],
    held_back: pd.DataFrame | None,
) -> list[LimitCheck]:
    """The limits of a price sync: the lists the portal would hold once the missing ones are
    created, and the distinct SKUs it would price (``portal_items``: what it holds now)."""
    slugs = list(desired_slugs)
    return check_limits(
        {
            "price_lists": projected_count(lists_on_portal, slugs),
            "products": priced_skus_after_sync(erp_items, portal_items, slugs, held_back),
        }
    )


def held_by_price_limits(
    changes: pd.DataFrame,
    checked: Iterable[LimitCheck],
    *,
    lists_on_portal: set[str],
    portal_items: pd.DataFrame | None,
) -> pd.Series:
    """Per change-set row: True when a limit the sync would pass holds it back.

    Past the list limit a list that could not be created cannot be filled (``lists_on_portal``:
    the lists there after this run's creations); past the product limit no SKU new to the
    portal is priced. Prices of what the portal already holds still update.
    """
    refused = exceeded(checked)
    held = pd.Series(False, index=changes.index)
    if "price_lists" in refused:
        held |= ~changes["price_list_slug"].isin(lists_on_portal)
    if "products" in refused:
        held |= new_skus(changes, portal_items)
    return held
