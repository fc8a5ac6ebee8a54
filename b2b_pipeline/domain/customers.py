"""ERP customers -> the portal customers they imply; what to create, update, hold and release.

The ERP is the system of record for the account: its group, price lists, discount, tax treatment
and credit terms. The portal customer's ``accounting_id`` is the ERP ``account_code`` (the
Company-ID <-> ERP-account mapping), and ERP-originated customers also carry it as
``external_id``.

SparkLayer has no "credit hold" flag: a held, blocked or inactive account is moved to the
``on_hold_group`` (ordering off, no Pay on Account) and its credit limit set to 0. Release
restores the mapped group and the ERP credit limit, because both are recomputed from the ERP on
every sync rather than remembered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

from b2b_pipeline.config.mappings import Mappings
from b2b_pipeline.domain.exceptions import exception_frame
from b2b_pipeline.domain.schemas.master_data import (
    AllowedValues,
    ErpCustomers,
    RecordNaming,
    allowed,
    price_list_exists,
    validate_extract,
)

# The portal customer fields the ERP owns. Anything else on a portal record (names, addresses,
# balance) belongs to the portal and is carried over untouched when a record is replaced.
OWNED_FIELDS = [
    "external_id",
    "accounting_id",
    "company_name",
    "email",
    "group",
    "price_lists",
    "discount_percentage",
    "tax_exempt",
    "payment_on_account",
]
# Inside payment_on_account, the ERP owns the terms; balance and balance_date are the portal's.
# (contract v2 §2: the currency key is ``currency_code``, as everywhere else in the API.)
OWNED_CREDIT_FIELDS = ["credit_limit", "currency_code", "net_terms"]

# ERP statuses of payment methods that give credit: a held account must not use them.
_CREDIT_ORDER_STATUSES = {"TO_BE_INVOICED"}


def _customer_label(records: pd.DataFrame) -> pd.Series:
    named = records["name"] != ""
    return "Account " + records["account_code"] + (" (" + records["name"] + ")").where(named, "")


def validate_customers(
    erp_customers: pd.DataFrame,
    mappings: Mappings,
    *,
    price_lists: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``erp_customers`` into (clean accounts, exception rows).

    An ERP customer group or tax code missing from the mapping file is a ``MAPPING`` exception
    (never a silent default group). With ``price_lists`` (the clean ERP price lists), an account
    pointing at a list that does not exist, or was itself held back, is an exception too.
    """
    rules = [
        AllowedValues(
            column="customer_group",
            name="customer_group_mapped",
            allowed=allowed(mappings.customer_groups),
            phrase="the customer group {value} has no portal group in the mapping file",
            reason_code="UNMAPPED_CUSTOMER_GROUP",
            then="Add the group to customer_groups in the mapping file (or correct the "
            "account's group in the ERP); the next sync sends the account.",
        ),
        AllowedValues(
            column="tax_code",
            name="tax_code_mapped",
            allowed=allowed(mappings.tax_codes),
            phrase="the tax code {value} has no tax treatment in the mapping file",
            reason_code="UNMAPPED_TAX_CODE",
            then="Add the tax code to tax_codes in the mapping file (or correct the account's "
            "tax code in the ERP); the next sync sends the account.",
        ),
    ]
    if price_lists is not None:
        rules.append(price_list_exists(price_lists))
    naming = RecordNaming(
        entity="customer",
        key=lambda records: records["account_code"],
        label=_customer_label,
        account_code="account_code",
        extra_rules=tuple(rules),
    )
    return validate_extract(erp_customers, ErpCustomers, naming)


def desired_portal_customers(
    erp_customers: pd.DataFrame,
    mappings: Mappings,
    *,
    erp_price_lists: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The portal customer record each clean ERP account implies, one row per account.

    Columns: ``account_code``, the owned portal fields (:data:`OWNED_FIELDS`), ``on_hold``
    (bool), ``hold_reason`` (``inactive`` | ``credit_hold`` | None) and ``mapped_group`` (the
    group the account returns to on release). ``erp_price_lists`` (with ``code`` and
    ``parent_code``) adds each customer-specific list's parent group list after it.
    """
    customers = erp_customers.reset_index(drop=True)
    mapped_group = customers["customer_group"].map(mappings.customer_groups)
    unmapped = sorted(customers.loc[mapped_group.isna(), "customer_group"].unique())
    if unmapped:
        raise ValueError(
            f"customer groups {unmapped} have no mapping: run validate_customers first, which "
            "turns them into UNMAPPED_CUSTOMER_GROUP exceptions"
        )
    unknown_tax = sorted(set(customers["tax_code"]) - set(mappings.tax_codes))
    if unknown_tax:
        raise ValueError(
            f"tax codes {unknown_tax} have no mapping: run validate_customers first, which "
            "turns them into UNMAPPED_TAX_CODE exceptions"
        )
    inactive = ~customers["active"].astype(bool)
    held = customers["credit_hold"].astype(bool)
    on_hold = inactive | held
    # An inactive account is reported as such even when it is also on hold: reactivation is
    # the first thing credit control has to do.
    hold_reason = pd.Series(
        np.select([inactive, held], ["inactive", "credit_hold"], default=""), dtype=object
    ).replace("", None)

    credit_limit = customers["credit_limit"].astype("float64").where(~on_hold, 0.0)
    net_terms = customers["payment_terms"].str.extract(r"^NET(\d+)$", expand=False)
    exempt_by_code = {code: treatment.tax_exempt for code, treatment in mappings.tax_codes.items()}

    desired = pd.DataFrame(
        {
            "account_code": customers["account_code"],
            "external_id": customers["account_code"],
            "accounting_id": customers["account_code"],
            "company_name": customers["name"],
            "email": customers["email"],
            "group": mapped_group.where(~on_hold, mappings.on_hold_group),
            "price_lists": _account_price_lists(customers, erp_price_lists),
            "discount_percentage": customers["discount_percentage"].astype("float64").fillna(0.0),
            "tax_exempt": customers["tax_code"].map(exempt_by_code).astype(bool),
            "payment_on_account": [
                None
                if terms is None or pd.isna(terms)
                # NaN credit limit = no limit in the ERP, sent as null (the portal enforces a set
                # limit only).
                else {
                    "credit_limit": None if np.isnan(limit) else float(limit),
                    "currency_code": currency,
                    "net_terms": int(terms),
                }
                for terms, limit, currency in zip(
                    net_terms, credit_limit, customers["currency"], strict=True
                )
            ],
            "on_hold": on_hold,
            "hold_reason": hold_reason,
            "mapped_group": mapped_group,
        }
    )
    return desired


def _account_price_lists(
    customers: pd.DataFrame, erp_price_lists: pd.DataFrame | None
) -> list[list[str]]:
    """Each account's portal price lists: its own list first, then that list's parent."""
    own = customers["price_list_code"]
    if erp_price_lists is not None and "parent_code" in erp_price_lists:
        parents = erp_price_lists.drop_duplicates("code").set_index("code")["parent_code"]
        parent = own.map(parents)
    else:
        parent = pd.Series(None, index=customers.index, dtype=object)
    # dict.fromkeys: ordered and without a repeat when a list names itself as parent.
    return [
        list(dict.fromkeys(code for code in (first, second) if isinstance(code, str) and code))
        for first, second in zip(own, parent, strict=True)
    ]


def customer_groups_needed(mappings: Mappings) -> list[dict[str, Any]]:
    """The portal customer groups the mapping implies, on-hold included.

    The on-hold group disables ordering and offers no credit payment method (those whose ERP
    status is ``TO_BE_INVOICED``: Pay on Account, Pay by Invoice).
    """
    all_methods = sorted(mappings.payment_methods)
    groups = [
        {
            "slug": slug,
            "name": slug.replace("-", " ").replace("_", " ").title(),
            "parent_slug": None,
            "payment_methods": all_methods,
            "ordering_enabled": True,
        }
        for slug in sorted(set(mappings.customer_groups.values()) - {mappings.on_hold_group})
    ]
    groups.append(
        {
            "slug": mappings.on_hold_group,
            "name": "On Hold",
            "parent_slug": None,
            "payment_methods": sorted(
                method
                for method, status in mappings.payment_methods.items()
                if status not in _CREDIT_ORDER_STATUSES
            ),
            "ordering_enabled": False,
        }
    )
    return groups


def group_slugs(groups: Iterable[Mapping[str, Any]]) -> list[str]:
    """The slug of each customer group (as the portal lists them, or as
    :func:`customer_groups_needed` gives them)."""
    return [slug for group in groups if isinstance(slug := group.get("slug"), str)]


def groups_to_create(
    wanted: list[dict[str, Any]], existing_slugs: Iterable[str]
) -> list[dict[str, Any]]:
    """The groups of ``wanted`` the portal does not hold yet, in order."""
    existing = set(existing_slugs)
    return [group for group in wanted if group["slug"] not in existing]


# --- matching desired against the portal --------------------------------------------------


_PORTAL_COLUMNS = ["id", *OWNED_FIELDS]


def _portal_frame(portal_customers: pd.DataFrame) -> pd.DataFrame:
    portal = portal_customers.copy()
    for column in _PORTAL_COLUMNS:
        if column not in portal:
            portal[column] = None
    return portal.reset_index(drop=True)


def match_portal_customers(desired: pd.DataFrame, portal_customers: pd.DataFrame) -> pd.DataFrame:
    """For each desired account: the portal record that is it, and how it was recognised.

    ``accounting_id`` first: a company that registered on the portal by itself and was then
    mapped to ERP account X by an operator *is* account X, and must be updated, not duplicated.
    ``external_id`` second. A portal record is matched to at most one account. Returns
    ``account_code``, ``portal_row`` (position in ``portal_customers`` or -1) and ``matched_by``.
    """
    portal = _portal_frame(portal_customers)
    portal["portal_row"] = np.arange(len(portal))
    accounts = desired[["account_code"]].reset_index(drop=True)

    # Two portal records mapped to one account: prefer the one the pipeline created
    # (external_id = account), then the oldest, so the choice is stable from run to run.
    by_accounting = portal[portal["accounting_id"].notna() & (portal["accounting_id"] != "")]
    by_accounting = by_accounting.assign(
        _ours=by_accounting["external_id"] != by_accounting["accounting_id"]
    ).sort_values(["_ours", "portal_row"])
    by_accounting = by_accounting.drop_duplicates("accounting_id")
    first = accounts.merge(
        by_accounting[["accounting_id", "portal_row"]],
        how="left",
        left_on="account_code",
        right_on="accounting_id",
    ).drop(columns="accounting_id")

    claimed = set(first["portal_row"].dropna().astype(int))
    free = portal[~portal["portal_row"].isin(claimed) & portal["external_id"].notna()]
    free = free.drop_duplicates("external_id")[["external_id", "portal_row"]]
    second = accounts.merge(free, how="left", left_on="account_code", right_on="external_id")

    matched = first["portal_row"].notna()
    portal_row = first["portal_row"].fillna(second["portal_row"])
    # None for no match; the accounting_id match wins where both apply (assigned last).
    matched_by = np.full(len(accounts), None, dtype=object)
    matched_by[portal_row.notna().to_numpy()] = "external_id"
    matched_by[matched.to_numpy()] = "accounting_id"
    return pd.DataFrame(
        {
            "account_code": accounts["account_code"],
            "portal_row": portal_row.fillna(-1).astype(int),
            "matched_by": matched_by,
        }
    )


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str)


def _number(values: pd.Series) -> pd.Series:
    # 4 decimals: the ERP's NUMERIC(14,4); a float round trip through JSON must not look changed.
    numbers = pd.to_numeric(values, errors="coerce").round(4)
    return numbers.map("{:.4f}".format).where(numbers.notna(), "")


def _credit(values: pd.Series, key: str) -> pd.Series:
    return values.map(lambda terms: terms.get(key) if isinstance(terms, dict) else None)


def _comparable(records: pd.DataFrame) -> pd.DataFrame:
    """The owned fields as canonical text, equal exactly when the portal needs no update."""
    return pd.DataFrame(
        {
            "external_id": _text(records["external_id"]),
            "accounting_id": _text(records["accounting_id"]),
            "company_name": _text(records["company_name"]),
            "email": _text(records["email"]),
            "group": _text(records["group"]),
            "price_lists": records["price_lists"].map(
                lambda lists: (
                    "|".join(lists) if isinstance(lists, list | tuple | np.ndarray) else ""
                )
            ),
            # A portal with no discount is the same as 0%.
            "discount_percentage": _number(
                pd.to_numeric(records["discount_percentage"], errors="coerce").fillna(0.0)
            ),
            "tax_exempt": records["tax_exempt"].eq(True).astype(str),  # missing: not exempt
            **{
                f"payment_on_account.{key}": (
                    _number(_credit(records["payment_on_account"], key))
                    if key != "currency_code"
                    else _text(_credit(records["payment_on_account"], key))
                )
                for key in OWNED_CREDIT_FIELDS
            },
            "payment_on_account": records["payment_on_account"].map(
                lambda terms: "set" if isinstance(terms, dict) else ""
            ),
        }
    ).reset_index(drop=True)


def record_hash(desired: pd.DataFrame) -> pd.Series:
    """A stable 64-bit hash of each record's owned fields (for snapshots and quick equality)."""
    return pd.util.hash_pandas_object(_comparable(desired), index=False)


def customer_changes(desired: pd.DataFrame, portal_customers: pd.DataFrame) -> pd.DataFrame:
    """What to do per account: ``create`` | ``update`` | ``unchanged``, with the PUT to make.

    Columns: ``account_code``, ``action``, ``matched_by``, ``portal_id``, ``lookup_by``
    (``sparklayer`` when the record was recognised by ``accounting_id``, so the PUT replaces that
    very record even though its ``external_id`` differs; ``platform`` otherwise),
    ``identifier`` (the id to PUT to), ``changed_fields`` and ``body`` (the full record to PUT:
    the owned fields over what the portal holds, so a full replace keeps the portal's own
    fields such as addresses and the credit balance; None when unchanged).
    """
    portal = _portal_frame(portal_customers)
    desired = desired.reset_index(drop=True)
    match = match_portal_customers(desired, portal)
    matched = match["portal_row"] >= 0
    existing = portal.iloc[match.loc[matched, "portal_row"]].reset_index(drop=True)

    wanted = _comparable(desired.loc[matched])
    current = _comparable(existing)
    differs = (wanted != current).to_numpy()
    field_of = np.array(wanted.columns.str.split(".").str[0])  # payment_on_account.x -> field
    changed_of_matched = iter([sorted(set(field_of[row])) for row in differs])
    changed_fields = pd.Series(
        [next(changed_of_matched) if is_matched else [] for is_matched in matched], dtype=object
    )

    action = np.where(
        ~matched, "create", np.where(changed_fields.map(len) > 0, "update", "unchanged")
    )
    portal_id = np.full(len(desired), None, dtype=object)
    portal_id[matched.to_numpy()] = existing["id"].to_numpy()
    by_accounting = (match["matched_by"] == "accounting_id").to_numpy()
    lookup_by = np.where(by_accounting, "sparklayer", "platform")
    identifier = np.where(by_accounting, portal_id, desired["account_code"])

    existing_by_row = dict(zip(np.flatnonzero(matched), _records(existing), strict=True))
    owned = _records(desired[OWNED_FIELDS])
    bodies = [
        None if act == "unchanged" else _put_body(owned[row], existing_by_row.get(row))
        for row, act in enumerate(action)
    ]
    return pd.DataFrame(
        {
            "account_code": desired["account_code"],
            "action": action,
            "matched_by": match["matched_by"],
            "portal_id": portal_id,
            "lookup_by": lookup_by,
            "identifier": identifier,
            "changed_fields": changed_fields,
            "body": bodies,
        }
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts. The customer frames' column labels are all text; pandas-stubs type
    ``to_dict`` keys only as Hashable."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def _put_body(owned: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """The full customer to PUT: the portal record as it is, with the owned fields replaced."""
    if existing is None:
        body: dict[str, Any] = {"addresses": []}
    else:
        body = {
            key: value
            for key, value in existing.items()
            if key != "portal_row" and not (isinstance(value, float) and np.isnan(value))
        }
    terms = owned["payment_on_account"]
    if terms is not None and isinstance(body.get("payment_on_account"), dict):
        terms = {**body["payment_on_account"], **terms}  # keep the portal's balance
    body.update(owned)
    body["payment_on_account"] = terms
    body["price_lists"] = list(owned["price_lists"])
    body["discount_percentage"] = float(owned["discount_percentage"])
    body["tax_exempt"] = bool(owned["tax_exempt"])
    return body


def holds_and_releases(
    desired: pd.DataFrame,
    portal_customers: pd.DataFrame,
    *,
    on_hold_group: str | None = None,
) -> pd.DataFrame:
    """Accounts moving onto or off the on-hold group on the portal, for the audit trail.

    ``action`` is ``credit_hold_applied`` or ``credit_hold_released``; ``reason`` says why an
    account is held (``credit_hold`` | ``inactive``). Accounts not yet on the portal are created
    in their right group and are no move. ``on_hold_group`` defaults to the held accounts'
    group in ``desired``, else the mapping default.
    """
    if on_hold_group is None:
        held_groups = desired.loc[desired["on_hold"], "group"].unique()
        on_hold_group = (
            held_groups[0] if len(held_groups) else Mappings.model_fields["on_hold_group"].default
        )
    portal = _portal_frame(portal_customers)
    desired = desired.reset_index(drop=True)
    match = match_portal_customers(desired, portal)
    matched = match["portal_row"] >= 0
    previous_group = pd.Series(None, index=desired.index, dtype=object)
    previous_group[matched.to_numpy()] = (
        portal["group"].iloc[match.loc[matched, "portal_row"]].to_numpy()
    )
    portal_id = pd.Series(None, index=desired.index, dtype=object)
    portal_id[matched.to_numpy()] = portal["id"].iloc[match.loc[matched, "portal_row"]].to_numpy()
    was_held = previous_group == on_hold_group
    applied = matched & desired["on_hold"] & ~was_held
    released = matched & ~desired["on_hold"] & was_held
    moves = pd.DataFrame(
        {
            "account_code": desired["account_code"],
            "action": np.where(applied, "credit_hold_applied", "credit_hold_released"),
            "reason": desired["hold_reason"],
            "portal_id": portal_id,
            "previous_group": previous_group,
            "group": desired["group"],
        }
    )
    return moves[(applied | released).to_numpy()].reset_index(drop=True)


def customers_by_price_list(desired: pd.DataFrame) -> pd.DataFrame:
    """Which accounts see each price list: ``price_list_slug``, ``account_code``,
    ``company_name`` (to name them when a list fails to update)."""
    pairs = desired[["account_code", "company_name", "price_lists"]].explode("price_lists")
    pairs = pairs.rename(columns={"price_lists": "price_list_slug"}).dropna(
        subset=["price_list_slug"]
    )
    return pairs[["price_list_slug", "account_code", "company_name"]].reset_index(drop=True)


def filled_lists_only(desired: pd.DataFrame, filled: set[str]) -> pd.DataFrame:
    """``desired`` with each account's price lists cut to those in ``filled``.

    A customer is pointed at a list only once the list holds prices on the portal: a buyer
    must never see an empty list (the price sync fills lists before customers are pointed at
    them, and the check after the sync compares with the same cut).
    """
    if desired.empty:
        return desired
    return desired.assign(
        price_lists=desired["price_lists"].map(
            lambda slugs: [s for s in (slugs or []) if s in filled]
        )
    )


def unmapped_customer_groups(erp_customers: pd.DataFrame, mappings: Mappings) -> list[str]:
    """ERP customer groups the mapping file gives no portal group, sorted."""
    groups = set(erp_customers["customer_group"].dropna())
    return sorted(groups - set(mappings.customer_groups))


def customers_on_missing_lists(
    portal_customers: pd.DataFrame, portal_list_slugs: set[str]
) -> list[str]:
    """``"<account>: <slug>"`` for every portal customer pointed at a list the portal lacks.

    The account is the customer's ``accounting_id`` (its portal id when it has none).
    """
    if portal_customers.empty or "price_lists" not in portal_customers:
        return []
    customers = _portal_frame(portal_customers)
    account = customers["accounting_id"].where(
        customers["accounting_id"].notna() & (customers["accounting_id"] != ""), customers["id"]
    )
    pairs = pd.DataFrame(
        {"account": account.astype(str), "slug": customers["price_lists"]}
    ).explode("slug")
    missing = pairs[pairs["slug"].notna() & ~pairs["slug"].isin(portal_list_slugs)]
    return sorted(set(missing["account"] + ": " + missing["slug"].astype(str)))


def refused_customers(refusals: pd.DataFrame) -> pd.DataFrame:
    """``PORTAL_REJECTED_RECORD`` exceptions for customers the portal refused.

    ``refusals``: ``account_code``, ``reason`` (the portal's words). The account is sent again
    by the next sync, so the exception resolves itself once the ERP record is corrected.
    """
    if refusals.empty:
        return exception_frame()
    accounts = refusals["account_code"].astype(str)
    return exception_frame(
        pd.DataFrame(
            {
                "entity": "customer",
                "entity_key": accounts,
                "account_code": accounts,
                "reason_code": "PORTAL_REJECTED_RECORD",
                "message": "The portal refused customer "
                + accounts
                + ": "
                + refusals["reason"].fillna("no reason given").astype(str)
                + ". Correct the account in the ERP; the next sync sends it again.",
                "payload": None,
            }
        )
    )
