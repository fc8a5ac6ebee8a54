"""Master data ERP -> portal: the pure rules (validation, customers, price lists, stock, sync log).

No servers: DataFrames in, DataFrames and plans out, against the shipped mapping file.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.domain.customers import (
    customer_changes,
    customer_groups_needed,
    customers_by_price_list,
    customers_on_missing_lists,
    desired_portal_customers,
    filled_lists_only,
    holds_and_releases,
    validate_customers,
)
from b2b_pipeline.domain.inventory import (
    accepted_stock,
    refused_stock_exceptions,
    stock_changes,
    stock_levels,
    validate_inventory,
)
from b2b_pipeline.domain.price_lists import (
    PRICING_BATCH_SIZE,
    EmptyPriceExtract,
    PriceListCodeTooLong,
    desired_price_lists,
    effective_price_list_items,
    held_back_skus,
    held_back_with_children,
    lists_to_compare,
    lists_to_create,
    minimum_pricing_calls,
    portal_pricing_rows,
    price_changes,
    price_history,
    price_sync_exceptions,
    pricing_batches,
    refuse_empty_extract,
    snapshot_after_push,
    validate_price_list_items,
    validate_price_lists,
)
from b2b_pipeline.domain.pricing import resolve_unit_prices
from b2b_pipeline.domain.schemas.master_data import (
    ErpCustomers,
    ErpExtractError,
    ErpPriceListItems,
    column_schema,
)
from b2b_pipeline.domain.sync_log import SYNC_LOG_MAX_ERRORS, sync_log_body


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


def erp_customer(account_code: str, **overrides: object) -> dict[str, object]:
    """One ``erp_customers`` row as the gateway returns it (Decimal money, 0/1 flags)."""
    row: dict[str, object] = {
        "account_code": account_code,
        "name": f"Company {account_code}",
        "email": f"buyer@{account_code.lower()}.example",
        "customer_group": "trade",
        "price_list_code": "PL-TRADE-GBP",
        "discount_percentage": Decimal("0"),
        "payment_terms": "NET30",
        "tax_code": "STANDARD",
        "currency": "GBP",
        "credit_limit": Decimal("5000.0000"),
        "credit_hold": 0,
        "active": 1,
    }
    row.update(overrides)
    return row


ERP_PRICE_LISTS = pd.DataFrame(
    {
        "code": ["PL-TRADE-GBP", "PL-RETAIL-GBP", "PL-ACME"],
        "name": ["Trade GBP", "Retail GBP", "Acme Ltd special prices"],
        "currency": ["GBP", "GBP", "GBP"],
        "parent_code": [None, None, "PL-TRADE-GBP"],
    }
)


def breaks(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["price_list_code", "sku", "min_quantity", "unit_price"])


def portal_breaks(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["price_list_slug", "sku", "quantity", "price"])


# --- validation of ERP extracts -------------------------------------------------------------


def test_bad_price_rows_become_plain_exceptions_and_the_rest_flow_on(mappings: Mappings) -> None:
    items = breaks(
        [
            ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
            ("PL-TRADE-GBP", "WID-0002", 1, 7.5),
            ("PL-TRADE-GBP", "WID-0003", 1, 5.0),
            ("PL-TRADE-GBP", "WID-0003", 10, -4.0),  # negative price
            ("PL-TRADE-GBP", "WID-0004", 0, 2.0),  # a break from 0
            ("PL-TRADE-GBP", "WID-0005", 1, 3.0),  # duplicated key, twice
            ("PL-TRADE-GBP", "WID-0005", 1, 3.2),
        ]
    ).astype({"unit_price": object})
    items.loc[len(items)] = ["PL-TRADE-GBP", "WID-0006", 1, "twelve"]

    clean, exceptions = validate_price_list_items(items, mappings)

    assert sorted(clean["sku"]) == ["WID-0001", "WID-0002"]
    assert clean["unit_price"].dtype == "float64" and clean["min_quantity"].dtype == "int64"
    by_key = exceptions.set_index("entity_key")
    assert set(by_key["reason_code"]) == {"INVALID_ERP_RECORD"}
    assert set(by_key["category"]) == {"DATA"}
    negative = by_key.loc["PL-TRADE-GBP/WID-0003/10", "message"]
    assert negative.startswith(
        "Price list PL-TRADE-GBP, SKU WID-0003, break 10: the price -4.00 is negative; prices "
        "must be zero or more. Correct it in the ERP;"
    )
    assert "the minimum quantity 0 is below 1" in by_key.loc["PL-TRADE-GBP/WID-0004/0", "message"]
    assert "'twelve' is not a number" in by_key.loc["PL-TRADE-GBP/WID-0006/1", "message"]
    # Both copies of the duplicate are held back, and the one queue row keeps both as received.
    duplicate = by_key.loc["PL-TRADE-GBP/WID-0005/1"]
    assert "more than one ERP row" in duplicate["message"]
    assert [copy["unit_price"] for copy in json.loads(duplicate["payload"])] == [3.0, 3.2]


def test_a_sku_with_one_bad_break_keeps_its_portal_prices(mappings: Mappings) -> None:
    items = breaks([("PL-TRADE-GBP", "WID-0003", 1, 5.0), ("PL-TRADE-GBP", "WID-0003", 10, -4.0)])
    portal = portal_breaks(
        [("PL-TRADE-GBP", "WID-0003", 1, 5.5), ("PL-TRADE-GBP", "WID-0003", 10, 4.0)]
    )

    clean, exceptions = validate_price_list_items(items, mappings)
    held = held_back_skus(exceptions)

    # The good break 1 is not sent alone (the portal would lose the break-10 price), and the
    # SKU is not removed from the portal either: it keeps its last good prices.
    assert clean.empty
    assert "keeps this SKU's current prices" in exceptions.loc[0, "message"]
    assert price_changes(clean, portal, held_back=held).empty
    assert price_changes(clean, portal).loc[0, "pricing"] == []  # what holding back prevents


def test_a_duplicated_break_holds_the_sku_back_rather_than_guessing(mappings: Mappings) -> None:
    items = breaks(
        [
            ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
            ("PL-TRADE-GBP", "WID-0001", 10, 9.0),
            ("PL-TRADE-GBP", "WID-0001", 10, 8.0),
            ("PL-TRADE-GBP", "WID-0002", 1, 7.5),
        ]
    )
    portal = portal_breaks(
        [
            ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
            ("PL-TRADE-GBP", "WID-0001", 10, 9.5),
            ("PL-TRADE-GBP", "WID-0002", 1, 7.0),
        ]
    )

    clean, exceptions = validate_price_list_items(items, mappings)
    changes = price_changes(clean, portal, held_back=held_back_skus(exceptions))

    assert held_back_skus(exceptions).values.tolist() == [["PL-TRADE-GBP", "WID-0001"]]
    assert changes[["sku", "pricing"]].values.tolist() == [
        ["WID-0002", [{"quantity": 1, "price": 7.5}]]
    ]


def test_items_on_unknown_lists_or_of_unknown_skus_are_held_back(mappings: Mappings) -> None:
    items = breaks([("PL-TRADE-GBP", "WID-0001", 1, 1.0), ("PL-GONE", "WID-0001", 1, 1.0)])
    items.loc[2] = ["PL-TRADE-GBP", "NOPE-1", 1, 1.0]
    products = pd.DataFrame({"sku": ["WID-0001"], "name": ["Widget"], "active": [True]})

    clean, exceptions = validate_price_list_items(
        items, mappings, price_lists=ERP_PRICE_LISTS, products=products
    )

    assert clean[["price_list_code", "sku"]].values.tolist() == [["PL-TRADE-GBP", "WID-0001"]]
    messages = " ".join(exceptions["message"])
    assert "the price list 'PL-GONE' is not among the ERP's valid price lists" in messages
    assert "the SKU 'NOPE-1' is not in the ERP catalogue" in messages


def test_unmapped_group_and_unknown_tax_code_are_mapping_exceptions(mappings: Mappings) -> None:
    extract = pd.DataFrame(
        [
            erp_customer("ACC001"),
            erp_customer("ACC002", customer_group="partners"),
            erp_customer("ACC003", tax_code="OUTSIDE_SCOPE"),
            erp_customer("ACC004", payment_terms="30 days", currency="XYZ"),
        ]
    )

    clean, exceptions = validate_customers(extract, mappings)

    assert clean["account_code"].tolist() == ["ACC001"]
    assert clean["credit_hold"].dtype == bool and clean["credit_limit"].dtype == "float64"
    rows = exceptions.set_index(["entity_key", "reason_code"])
    group = rows.loc[("ACC002", "UNMAPPED_CUSTOMER_GROUP")]
    assert group["category"] == "MAPPING" and group["account_code"] == "ACC002"
    assert group["message"].startswith(
        "Account ACC002 (Company ACC002): the customer group 'partners' has no portal group in "
        "the mapping file. Add the group to customer_groups in the mapping file"
    )
    tax = rows.loc[("ACC003", "UNMAPPED_TAX_CODE")]
    assert tax["category"] == "MAPPING" and "'OUTSIDE_SCOPE'" in tax["message"]
    both = rows.loc[("ACC004", "INVALID_ERP_RECORD"), "message"]
    assert "the payment terms '30 days' are not NET followed by a number of days" in both
    assert "the currency 'XYZ' is not one this integration trades in" in both


def test_every_copy_of_a_duplicated_account_goes_to_the_queue(mappings: Mappings) -> None:
    extract = pd.DataFrame(
        [erp_customer("ACC001"), erp_customer("ACC001", credit_limit=0), erp_customer("ACC002")]
    )

    clean, exceptions = validate_customers(extract, mappings)

    assert clean["account_code"].tolist() == ["ACC002"]
    assert exceptions["entity_key"].tolist() == ["ACC001"]
    assert len(json.loads(exceptions.loc[0, "payload"])) == 2


def test_missing_or_unreadable_values_name_the_field(mappings: Mappings) -> None:
    extract = pd.DataFrame(
        [erp_customer("ACC001", name="  ", credit_hold="maybe"), erp_customer("ACC002")]
    )

    clean, exceptions = validate_customers(extract, mappings)

    assert clean["account_code"].tolist() == ["ACC002"]
    message = exceptions.loc[0, "message"]
    assert (
        "the name is missing" in message and "the credit hold 'maybe' is not yes or no" in message
    )


def test_an_extract_missing_a_column_is_refused_whole(mappings: Mappings) -> None:
    extract = pd.DataFrame([erp_customer("ACC001")]).drop(columns="tax_code")
    with pytest.raises(ErpExtractError, match="tax_code"):
        validate_customers(extract, mappings)


def test_price_list_code_longer_than_a_portal_slug_is_an_exception() -> None:
    lists = pd.concat(
        [
            ERP_PRICE_LISTS,
            pd.DataFrame(
                {
                    "code": ["PL-A-VERY-LONG-CUSTOMER-SPECIFIC-CODE"],
                    "name": ["x"],
                    "currency": ["GBP"],
                    "parent_code": [None],
                }
            ),
        ],
        ignore_index=True,
    )

    clean, exceptions = validate_price_lists(lists)

    assert clean["code"].tolist() == ERP_PRICE_LISTS["code"].tolist()
    assert "longer than 30 characters" in exceptions.loc[0, "message"]
    with pytest.raises(PriceListCodeTooLong, match="PL-A-VERY-LONG-CUSTOMER-SPECIFIC-CODE"):
        desired_price_lists(lists)


def test_column_schema_describes_every_column_for_dagster() -> None:
    columns = column_schema(ErpPriceListItems)
    table = dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description) for name, type_, description in columns]
    )
    assert [c.name for c in table.columns] == [
        "price_list_code",
        "sku",
        "min_quantity",
        "unit_price",
    ]
    assert all(description for _, _, description in column_schema(ErpCustomers))


# --- customers ----------------------------------------------------------------------------


def desired_for(rows: list[dict[str, object]], mappings: Mappings) -> pd.DataFrame:
    clean, exceptions = validate_customers(pd.DataFrame(rows), mappings)
    assert exceptions.empty, exceptions["message"].tolist()
    return desired_portal_customers(clean, mappings, erp_price_lists=ERP_PRICE_LISTS)


def as_portal(desired: pd.DataFrame, **overrides: object) -> pd.DataFrame:
    """The portal as it would be after the desired records were pushed."""
    changes = customer_changes(desired, pd.DataFrame())
    records = [{**body, "id": f"sl-{i}", **overrides} for i, body in enumerate(changes["body"])]
    return pd.DataFrame(records)


def test_held_and_inactive_accounts_go_on_hold_with_no_credit(mappings: Mappings) -> None:
    desired = desired_for(
        [
            erp_customer("ACC001"),
            erp_customer("ACC002", credit_hold=1),
            erp_customer("ACC003", active=0),
        ],
        mappings,
    ).set_index("account_code")

    assert desired.loc["ACC001", "group"] == "trade"
    assert desired.loc["ACC001", "payment_on_account"]["credit_limit"] == 5000.0
    for account, reason in [("ACC002", "credit_hold"), ("ACC003", "inactive")]:
        assert desired.loc[account, "group"] == mappings.on_hold_group
        assert desired.loc[account, "payment_on_account"] == {
            "credit_limit": 0.0,
            "currency_code": "GBP",
            "net_terms": 30,
        }
        assert desired.loc[account, "hold_reason"] == reason


def test_hold_then_release_moves_the_account_and_restores_its_terms(mappings: Mappings) -> None:
    before = desired_for([erp_customer("ACC001"), erp_customer("ACC002")], mappings)
    portal = as_portal(before)

    held = desired_for([erp_customer("ACC001"), erp_customer("ACC002", credit_hold=1)], mappings)
    moves = holds_and_releases(held, portal, on_hold_group=mappings.on_hold_group)
    assert moves[["account_code", "action", "reason"]].values.tolist() == [
        ["ACC002", "credit_hold_applied", "credit_hold"]
    ]
    changes = customer_changes(held, portal).set_index("account_code")
    assert changes.loc["ACC001", "action"] == "unchanged"
    assert changes.loc["ACC002", "action"] == "update"
    assert changes.loc["ACC002", "changed_fields"] == ["group", "payment_on_account"]

    portal_while_held = as_portal(held)
    released = desired_for([erp_customer("ACC001"), erp_customer("ACC002")], mappings)
    moves = holds_and_releases(released, portal_while_held, on_hold_group=mappings.on_hold_group)
    assert moves[["account_code", "action", "previous_group", "group"]].values.tolist() == [
        ["ACC002", "credit_hold_released", mappings.on_hold_group, "trade"]
    ]
    body = customer_changes(released, portal_while_held).set_index("account_code").loc["ACC002"]
    assert body["body"]["group"] == "trade"
    assert body["body"]["payment_on_account"]["credit_limit"] == 5000.0


def test_a_self_registered_company_mapped_to_an_account_is_updated_not_duplicated(
    mappings: Mappings,
) -> None:
    desired = desired_for([erp_customer("ACC001", name="Acme Ltd")], mappings)
    self_registered = pd.DataFrame(
        [
            {
                "id": "sl-acme",
                "external_id": None,
                "accounting_id": "ACC001",  # mapped by an operator
                "company_name": "ACME",
                "email": "buyer@acc001.example",
                "first_name": "Ada",
                "group": None,
                "price_lists": [],
                "discount_percentage": 0,
                "tax_exempt": False,
                "payment_on_account": {"credit_limit": None, "balance": 120.5},
                "addresses": [{"line1": "1 High St"}],
            }
        ]
    )

    change = customer_changes(desired, self_registered).iloc[0]

    assert change["action"] == "update" and change["matched_by"] == "accounting_id"
    assert (change["lookup_by"], change["identifier"]) == ("sparklayer", "sl-acme")
    body = change["body"]
    assert body["id"] == "sl-acme" and body["external_id"] == "ACC001"
    # Owned fields from the ERP; the portal's own fields survive the full replace.
    assert body["company_name"] == "Acme Ltd" and body["group"] == "trade"
    assert body["first_name"] == "Ada" and body["addresses"] == [{"line1": "1 High St"}]
    assert body["payment_on_account"]["balance"] == 120.5
    assert body["payment_on_account"]["credit_limit"] == 5000.0


def test_matching_by_external_id_and_creating_the_rest(mappings: Mappings) -> None:
    desired = desired_for([erp_customer("ACC001"), erp_customer("ACC002")], mappings)
    portal = as_portal(desired.iloc[:1], accounting_id=None)  # pushed before the mapping field

    changes = customer_changes(desired, portal).set_index("account_code")

    assert changes.loc["ACC001", "matched_by"] == "external_id"
    assert changes.loc["ACC001", "changed_fields"] == ["accounting_id"]
    assert (changes.loc["ACC001", "lookup_by"], changes.loc["ACC001", "identifier"]) == (
        "platform",
        "ACC001",
    )
    assert changes.loc["ACC002", "action"] == "create"
    assert changes.loc["ACC002", "body"]["external_id"] == "ACC002"


def test_nothing_changed_means_nothing_to_send(mappings: Mappings) -> None:
    desired = desired_for([erp_customer(f"ACC{i:03d}") for i in range(20)], mappings)
    portal = as_portal(desired)
    # What comes back from JSON: floats for money, lists for lists.
    portal["discount_percentage"] = portal["discount_percentage"].astype(int)

    changes = customer_changes(desired, portal)

    assert set(changes["action"]) == {"unchanged"} and changes["body"].isna().all()


def test_customer_specific_list_comes_before_its_group_list(mappings: Mappings) -> None:
    desired = desired_for(
        [
            erp_customer("ACC001", price_list_code="PL-ACME", tax_code="EXEMPT"),
            erp_customer("ACC002", price_list_code=None),
        ],
        mappings,
    ).set_index("account_code")

    assert desired.loc["ACC001", "price_lists"] == ["PL-ACME", "PL-TRADE-GBP"]
    assert desired.loc["ACC001", "tax_exempt"]
    assert desired.loc["ACC002", "price_lists"] == []
    by_list = customers_by_price_list(desired.reset_index())
    assert sorted(by_list.loc[by_list["price_list_slug"] == "PL-TRADE-GBP", "account_code"]) == [
        "ACC001"
    ]


def test_a_customer_is_pointed_only_at_lists_the_portal_has_filled(mappings: Mappings) -> None:
    desired = desired_for([erp_customer("ACME", price_list_code="PL-ACME")], mappings)
    assert desired.loc[0, "price_lists"] == ["PL-ACME", "PL-TRADE-GBP"]

    only_group = filled_lists_only(desired, {"PL-TRADE-GBP"})

    assert only_group.loc[0, "price_lists"] == ["PL-TRADE-GBP"]
    assert desired.loc[0, "price_lists"] == ["PL-ACME", "PL-TRADE-GBP"]  # a copy, not a change


def test_portal_customers_on_a_list_the_portal_lacks_are_named() -> None:
    portal = pd.DataFrame(
        [
            {"id": "sl-1", "accounting_id": "ACME", "price_lists": ["PL-ACME", "PL-TRADE-GBP"]},
            {"id": "sl-2", "accounting_id": None, "price_lists": ["PL-GONE"]},
            {"id": "sl-3", "accounting_id": "BETA", "price_lists": []},
        ]
    )

    missing = customers_on_missing_lists(portal, {"PL-TRADE-GBP"})

    assert missing == ["ACME: PL-ACME", "sl-2: PL-GONE"]
    assert customers_on_missing_lists(pd.DataFrame(), {"PL-TRADE-GBP"}) == []


def test_on_hold_group_stops_ordering_and_offers_no_credit(mappings: Mappings) -> None:
    groups = {group["slug"]: group for group in customer_groups_needed(mappings)}

    assert set(groups) == set(mappings.customer_groups.values()) | {mappings.on_hold_group}
    on_hold = groups[mappings.on_hold_group]
    assert on_hold["ordering_enabled"] is False
    # Pay on Account and Pay by Invoice give credit (contract v2 §5 names); a card still works.
    assert on_hold["payment_methods"] == ["platform_upfront"]
    assert groups["trade"]["ordering_enabled"] is True
    assert {"on_account", "invoice"} <= set(groups["trade"]["payment_methods"])


# --- price lists --------------------------------------------------------------------------


CATALOGUE = [
    ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
    ("PL-TRADE-GBP", "WID-0001", 10, 9.0),
    ("PL-TRADE-GBP", "WID-0002", 1, 7.5),
    ("PL-RETAIL-GBP", "WID-0001", 1, 12.0),
]


def test_lists_missing_on_the_portal_are_created() -> None:
    desired = desired_price_lists(ERP_PRICE_LISTS)
    portal_lists = pd.DataFrame({"slug": ["PL-TRADE-GBP"], "name": ["Trade GBP"]})

    to_create = lists_to_create(desired, portal_lists)

    assert to_create[["slug", "currency_code"]].values.tolist() == [
        ["PL-RETAIL-GBP", "GBP"],
        ["PL-ACME", "GBP"],
    ]


def test_one_changed_price_sends_one_sku_with_all_its_breaks() -> None:
    erp = breaks(CATALOGUE)
    erp.loc[1, "unit_price"] = 8.75  # WID-0001 break 10 on the trade list

    changes = price_changes(erp, portal_breaks(CATALOGUE))

    assert changes[["price_list_slug", "sku", "change"]].values.tolist() == [
        ["PL-TRADE-GBP", "WID-0001", "changed"]
    ]
    assert changes.loc[0, "pricing"] == [
        {"quantity": 1, "price": 10.0},
        {"quantity": 10, "price": 8.75},
    ]


def test_nothing_changed_sends_nothing_even_after_a_float_round_trip() -> None:
    portal = portal_breaks(CATALOGUE)
    portal["price"] = portal["price"] + 1e-9

    assert price_changes(breaks(CATALOGUE), portal).empty


def test_a_sku_gone_from_the_erp_is_sent_with_no_pricing() -> None:
    changes = price_changes(breaks(CATALOGUE[:3]), portal_breaks(CATALOGUE))

    assert changes[["price_list_slug", "sku", "change", "pricing"]].values.tolist() == [
        ["PL-RETAIL-GBP", "WID-0001", "removed", []]
    ]


def test_an_added_quantity_break_sends_the_sku_with_every_break() -> None:
    erp = breaks([*CATALOGUE, ("PL-TRADE-GBP", "WID-0002", 50, 6.0)])

    changes = price_changes(erp, portal_breaks(CATALOGUE))

    assert changes[["sku", "change"]].values.tolist() == [["WID-0002", "changed"]]
    assert changes.loc[0, "pricing"] == [
        {"quantity": 1, "price": 7.5},
        {"quantity": 50, "price": 6.0},
    ]


def test_first_sync_sends_every_sku_and_the_snapshot_then_matches() -> None:
    erp = breaks(CATALOGUE)

    first = price_changes(erp, None)
    assert set(first["change"]) == {"added"} and len(first) == 3
    snapshot = snapshot_after_push(None, first)
    assert price_changes(erp, snapshot).empty

    rejected = pd.DataFrame({"price_list_slug": ["PL-TRADE-GBP"], "sku": ["WID-0002"]})
    partial = snapshot_after_push(None, first, rejected=rejected)
    resent = price_changes(erp, partial)
    assert resent[["price_list_slug", "sku"]].values.tolist() == [["PL-TRADE-GBP", "WID-0002"]]


def test_an_empty_erp_extract_never_empties_the_portal() -> None:
    with pytest.raises(EmptyPriceExtract, match="refusing to remove every price"):
        refuse_empty_extract(breaks([]), portal_breaks(CATALOGUE))
    refuse_empty_extract(breaks([]), None)  # a merchant starting with no prices: fine
    refuse_empty_extract(breaks(CATALOGUE), portal_breaks([]))


def test_price_history_has_every_break_pushed_and_a_removal_closes_the_sku() -> None:
    first = price_changes(breaks(CATALOGUE), None)
    gone = price_changes(breaks(CATALOGUE[:3]), portal_breaks(CATALOGUE))
    pushed_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

    history = price_history(pd.concat([first, gone]), ERP_PRICE_LISTS, pushed_at=pushed_at)

    rows = history[["price_list_slug", "sku", "min_quantity", "price", "currency"]]
    assert rows.astype(object).where(rows.notna(), None).values.tolist() == [
        ["PL-RETAIL-GBP", "WID-0001", 1, 12.0, "GBP"],
        ["PL-TRADE-GBP", "WID-0001", 1, 10.0, "GBP"],
        ["PL-TRADE-GBP", "WID-0001", 10, 9.0, "GBP"],
        ["PL-TRADE-GBP", "WID-0002", 1, 7.5, "GBP"],
        ["PL-RETAIL-GBP", "WID-0001", None, None, "GBP"],  # removed: validity closed
    ]
    assert (history["pushed_at"] == pushed_at).all()


def test_the_portals_pricing_read_back_is_one_row_per_break() -> None:
    answer = [
        {
            "sku": "WID-0001",
            "pricing": [{"quantity": 1, "price": 10.0}, {"quantity": 10, "price": 9}],
        },
        {"sku": "WID-0002", "pricing": []},
    ]

    rows = portal_pricing_rows("PL-TRADE-GBP", answer)

    assert rows.values.tolist() == [
        ["PL-TRADE-GBP", "WID-0001", 1, 10.0],
        ["PL-TRADE-GBP", "WID-0001", 10, 9.0],
    ]
    empty = portal_pricing_rows("PL-EMPTY", [])  # the portal answers 204 for an empty list
    assert empty.empty and list(empty.columns) == ["price_list_slug", "sku", "quantity", "price"]
    assert price_changes(breaks(CATALOGUE), rows)["sku"].tolist() == ["WID-0001", "WID-0002"]


def test_beyond_the_comparison_size_a_fixed_spread_of_lists_is_read_back() -> None:
    slugs = [f"PL-{i:03d}" for i in range(100)]
    assert lists_to_compare(slugs[:5], 20) == slugs[:5]
    sample = lists_to_compare(reversed(slugs), 20)
    assert len(sample) == 20 and sample == lists_to_compare(slugs, 20)
    assert sample[0] == "PL-000" and sample[-1] >= "PL-090"


def test_changed_skus_are_batched_at_500_in_the_wire_shape() -> None:
    skus = [f"SKU-{i:05d}" for i in range(1201)]
    erp = pd.concat(
        [
            breaks([("PL-TRADE-GBP", sku, 1, 1.0) for sku in skus]),
            breaks([("PL-RETAIL-GBP", sku, 1, 2.0) for sku in skus[:10]]),
        ]
    )

    changes = price_changes(erp, None)
    batches = pricing_batches(changes)

    assert {slug: len(items) for slug, items in batches.items()} == {
        "PL-RETAIL-GBP": 10,
        "PL-TRADE-GBP": 1201,
    }
    assert batches["PL-RETAIL-GBP"][0] == {
        "sku": "SKU-00000",
        "pricing": [{"quantity": 1, "price": 2.0}],
    }
    json.dumps(batches)  # plain JSON types, no numpy scalars
    calls = sum(math.ceil(len(items) / PRICING_BATCH_SIZE) for items in batches.values())
    assert calls == minimum_pricing_calls(changes) == 3 + 1


def test_price_the_portal_refused_names_the_customers_who_see_the_old_price(
    mappings: Mappings,
) -> None:
    desired = desired_for(
        [
            erp_customer("ACC001", name="Acme Ltd", price_list_code="PL-ACME"),
            erp_customer("ACC002", name="Beta plc"),
        ],
        mappings,
    )
    rejected = pd.DataFrame(
        {
            "price_list_slug": ["PL-ACME", "PL-TRADE-GBP"],
            "sku": ["WID-0003", None],
            "field": ["pricing[0].price", None],
            "message": ["must be a number", "the portal could not be reached after 5 attempts"],
        }
    )

    exceptions = price_sync_exceptions(rejected, customers_by_price_list(desired))

    row = exceptions.set_index("entity_key").loc["PL-ACME/WID-0003"]
    assert (row["category"], row["reason_code"], row["account_code"]) == (
        "PRICING",
        "PORTAL_REJECTED_ROW",
        "ACC001",
    )
    assert row["message"] == (
        "Price list PL-ACME, SKU WID-0003: the portal refused the new prices (pricing[0].price: "
        "must be a number), so Acme Ltd (ACC001) still sees the old price. Correct it in the "
        "ERP; the next sync sends it."
    )
    whole = exceptions.set_index("entity_key").loc["PL-TRADE-GBP"]
    assert whole["reason_code"] == "PRICE_LIST_SYNC_FAILED" and whole["account_code"] is None
    assert "Acme Ltd (ACC001), Beta plc (ACC002)" in whole["message"]


# --- effective lists: what the portal must hold so its rule gives the ERP's price ----------

# ACME's own list over the trade list: cheaper from 1 on WID-0001, but the trade list is
# cheaper from 50; WID-0002 is on the trade list only.
GROUP_AND_OWN = [
    ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
    ("PL-TRADE-GBP", "WID-0001", 10, 9.5),
    ("PL-TRADE-GBP", "WID-0001", 50, 9.0),
    ("PL-TRADE-GBP", "WID-0001", 100, 8.5),
    ("PL-TRADE-GBP", "WID-0002", 1, 7.5),
    ("PL-ACME", "WID-0001", 1, 9.2),
    ("PL-ACME", "WID-0001", 20, 9.1),
]


def effective_rows(items: pd.DataFrame, slug: str) -> list[tuple[str, int, float]]:
    effective = effective_price_list_items(items, ERP_PRICE_LISTS)
    rows = effective[effective["price_list_code"] == slug].sort_values(["sku", "min_quantity"])
    return list(zip(rows["sku"], rows["min_quantity"], rows["unit_price"], strict=True))


def test_a_customer_list_carries_the_erp_price_at_every_break_of_both_lists() -> None:
    items = breaks(GROUP_AND_OWN)

    assert effective_rows(items, "PL-ACME") == [
        ("WID-0001", 1, 9.2),
        ("WID-0001", 10, 9.2),  # the trade list's break, at ACME's cheaper price
        ("WID-0001", 20, 9.1),
        ("WID-0001", 50, 9.0),  # from here the trade list is cheaper: the ERP charges that
        ("WID-0001", 100, 8.5),
    ]
    # The group list is pushed as the ERP holds it; WID-0002 stays on it alone (the portal
    # falls through to the trade list for it, and so does the ERP).
    assert effective_rows(items, "PL-TRADE-GBP") == [
        (sku, quantity, price) for slug, sku, quantity, price in GROUP_AND_OWN[:5]
    ]


def test_a_customer_list_break_dearer_than_a_lower_one_is_priced_at_the_lower_one() -> None:
    # The ERP charges the lowest break reached, so a dearer break from 10 never applies.
    items = breaks(
        [
            ("PL-TRADE-GBP", "WID-0001", 1, 10.0),
            ("PL-ACME", "WID-0001", 1, 8.0),
            ("PL-ACME", "WID-0001", 10, 8.5),
        ]
    )
    assert effective_rows(items, "PL-ACME") == [("WID-0001", 1, 8.0), ("WID-0001", 10, 8.0)]


def first_list_price(lists: list[pd.DataFrame], sku: str, quantity: int, discount: float) -> float:
    """The portal's rule (contract §3), written out for the test: the first list with a break
    reached prices the SKU, at its largest break reached; less the discount, 2 dp half-up."""
    from decimal import ROUND_HALF_UP, Decimal

    for breaks_of_list in lists:
        reached = breaks_of_list[
            (breaks_of_list["sku"] == sku) & (breaks_of_list["min_quantity"] <= quantity)
        ]
        if len(reached):
            price = reached.sort_values("min_quantity")["unit_price"].iloc[-1]
            unit = Decimal(str(price)) * (1 - Decimal(str(discount)) / 100)
            return float(unit.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return math.nan


def test_on_the_effective_lists_the_portal_rule_gives_the_erp_price_at_every_quantity() -> None:
    rng = np.random.default_rng(3)
    skus = [f"SKU-{i:02d}" for i in range(12)]
    rows = []
    for sku in skus:  # a group list with falling prices at 1/10/50/100
        base = float(rng.uniform(5, 50))
        rows += [
            ("PL-TRADE-GBP", sku, q, round(base * f, 2))
            for q, f in zip((1, 10, 50, 100), (1.0, 0.95, 0.9, 0.85), strict=True)
        ]
    for sku in skus[:8]:  # ACME's list: its own breaks, prices on either side of the group's
        quantities = sorted(rng.choice([1, 5, 10, 25, 60, 120], size=3, replace=False))
        rows += [("PL-ACME", sku, int(q), round(float(rng.uniform(4, 50)), 2)) for q in quantities]
    items = breaks(rows)
    effective = effective_price_list_items(items, ERP_PRICE_LISTS)
    portal_lists = [
        effective[effective["price_list_code"] == slug] for slug in ("PL-ACME", "PL-TRADE-GBP")
    ]
    accounts = pd.DataFrame(
        {"account_code": ["ACME"], "price_list_code": ["PL-ACME"], "discount_percentage": [2.5]}
    )
    grid = pd.DataFrame(
        [(sku, q) for sku in skus for q in range(1, 130)], columns=["sku", "quantity"]
    ).assign(account_code="ACME", line_key=lambda f: range(len(f)))

    erp = resolve_unit_prices(grid, accounts, ERP_PRICE_LISTS, items)["erp_unit_price"]
    portal = [
        first_list_price(portal_lists, s, q, 2.5)
        for s, q in zip(grid.sku, grid.quantity, strict=True)
    ]

    assert np.allclose(erp.to_numpy(), np.array(portal), equal_nan=True, atol=1e-9)
    # ...which the raw lists would not have given: the case is really exercised.
    raw_lists = [items[items["price_list_code"] == s] for s in ("PL-ACME", "PL-TRADE-GBP")]
    raw = [
        first_list_price(raw_lists, s, q, 2.5) for s, q in zip(grid.sku, grid.quantity, strict=True)
    ]
    assert not np.allclose(erp.to_numpy(), np.array(raw), equal_nan=True)


def test_the_sync_compares_the_portal_with_the_effective_lists() -> None:
    items = breaks(GROUP_AND_OWN)
    portal = portal_breaks(GROUP_AND_OWN)  # what a sync of the raw ERP lists left there

    changes = price_changes(items, portal, erp_price_lists=ERP_PRICE_LISTS)

    # The trade list is as the ERP has it; ACME's copy gains the trade list's breaks.
    assert changes[["price_list_slug", "sku", "change"]].values.tolist() == [
        ["PL-ACME", "WID-0001", "changed"]
    ]
    assert [(b["quantity"], b["price"]) for b in changes.loc[0, "pricing"]] == [
        (1, 9.2),
        (10, 9.2),
        (20, 9.1),
        (50, 9.0),
        (100, 8.5),
    ]
    # Once pushed, nothing is left to send; the same answer as comparing the effective items.
    pushed = snapshot_after_push(portal, changes)
    assert price_changes(items, pushed, erp_price_lists=ERP_PRICE_LISTS).empty
    effective = effective_price_list_items(items, ERP_PRICE_LISTS)
    assert price_changes(effective, pushed).empty


def test_a_group_price_change_is_resent_on_the_customer_lists_it_changes() -> None:
    items = breaks(GROUP_AND_OWN)
    pushed = snapshot_after_push(None, price_changes(items, None, erp_price_lists=ERP_PRICE_LISTS))

    cheaper_from_50 = items.copy()
    cheaper_from_50.loc[2, "unit_price"] = 8.9  # trade WID-0001 from 50
    changes = price_changes(cheaper_from_50, pushed, erp_price_lists=ERP_PRICE_LISTS)
    assert changes[["price_list_slug", "sku"]].values.tolist() == [
        ["PL-ACME", "WID-0001"],
        ["PL-TRADE-GBP", "WID-0001"],
    ]
    # A group change that does not reach ACME's price (it stays cheaper from 1) leaves it alone.
    dearer_at_1 = items.copy()
    dearer_at_1.loc[0, "unit_price"] = 10.5
    changes = price_changes(dearer_at_1, pushed, erp_price_lists=ERP_PRICE_LISTS)
    assert changes[["price_list_slug", "sku"]].values.tolist() == [["PL-TRADE-GBP", "WID-0001"]]


def test_a_held_back_group_sku_keeps_its_customer_list_copies_as_they_are() -> None:
    items = breaks(GROUP_AND_OWN)
    pushed = snapshot_after_push(None, price_changes(items, None, erp_price_lists=ERP_PRICE_LISTS))
    held = pd.DataFrame({"price_list_code": ["PL-TRADE-GBP"], "sku": ["WID-0001"]})
    assert held_back_with_children(held, ERP_PRICE_LISTS).values.tolist() == [
        ["PL-TRADE-GBP", "WID-0001"],
        ["PL-ACME", "WID-0001"],
    ]
    # The trade list's WID-0001 rows failed validation: without them ACME's copy would be
    # recomputed from its own breaks alone (and dearer from 50). It is not touched.
    without_group_rows = items[
        ~((items["price_list_code"] == "PL-TRADE-GBP") & (items["sku"] == "WID-0001"))
    ]
    changes = price_changes(
        without_group_rows, pushed, held_back=held, erp_price_lists=ERP_PRICE_LISTS
    )
    assert changes.empty


# --- inventory ----------------------------------------------------------------------------


def test_stock_is_on_hand_less_allocated_never_negative_per_location(mappings: Mappings) -> None:
    extract = pd.DataFrame(
        {
            "sku": ["WID-0001", "WID-0001", "WID-0002", "WID-0003", "WID-0004"],
            "warehouse_code": ["MAIN", "NORTH", "MAIN", "DOCK9", "MAIN"],
            "on_hand": [10, 5, 3, 7, -2],
            "allocated": [4, 9, 0, 0, 0],
        }
    )

    clean, exceptions = validate_inventory(extract, mappings)
    levels = stock_levels(clean, mappings)

    assert levels.values.tolist() == [
        ["WID-0001", "default", 6],
        ["WID-0001", "north", 0],
        ["WID-0002", "default", 3],
    ]
    reasons = exceptions.set_index("entity_key")["reason_code"].to_dict()
    assert reasons == {
        "WID-0003@DOCK9": "UNMAPPED_WAREHOUSE",
        "WID-0004@MAIN": "INVALID_ERP_RECORD",
    }


def test_two_warehouses_on_one_portal_location_add_up() -> None:
    one_location = load_mappings().model_copy(
        update={"stock_locations": {"MAIN": "default", "NORTH": "default"}}
    )
    extract = pd.DataFrame(
        {
            "sku": ["WID-0001", "WID-0001"],
            "warehouse_code": ["MAIN", "NORTH"],
            "on_hand": [10, 5],
            "allocated": [4, 9],  # NORTH is over-allocated: it adds 0, not -4
        }
    )

    assert stock_levels(extract, one_location).values.tolist() == [["WID-0001", "default", 6]]


def test_only_changed_stock_is_pushed_and_vanished_stock_goes_to_zero() -> None:
    previous = pd.DataFrame(
        {
            "sku": ["WID-0001", "WID-0002", "WID-0009"],
            "stock_location_external_id": ["default", "default", "north"],
            "stock_level": [6, 3, 4],
        }
    )
    current = pd.DataFrame(
        {
            "sku": ["WID-0001", "WID-0002", "WID-0005"],
            "stock_location_external_id": ["default", "default", "default"],
            "stock_level": [6, 2, 1],
        }
    )

    rows = stock_changes(current, previous).to_dict("records")

    assert rows == [
        {"stock_location_external_id": "default", "sku": "WID-0002", "stock_level": 2},
        {"stock_location_external_id": "default", "sku": "WID-0005", "stock_level": 1},
        {"stock_location_external_id": "north", "sku": "WID-0009", "stock_level": 0},
    ]
    assert stock_changes(current, current).empty
    assert len(stock_changes(current, None)) == 3


def test_a_level_the_portal_refused_is_kept_out_of_the_snapshot_and_queued() -> None:
    changes = pd.DataFrame(
        {
            "stock_location_external_id": ["default", "default", "north"],
            "sku": ["WID-0001", "WID-0002", "WID-0001"],
            "stock_level": [6, 2, 4],
        }
    )
    refused = pd.DataFrame(
        {"sku": ["WID-0001"], "stock_location_external_id": ["north"], "message": "sku: too long"}
    )

    pushed = accepted_stock(changes, refused)
    (exception,) = refused_stock_exceptions(refused).to_dict("records")

    assert pushed[["sku", "stock_location_external_id"]].values.tolist() == [
        ["WID-0001", "default"],
        ["WID-0002", "default"],
    ]
    assert (exception["entity_key"], exception["category"]) == ("WID-0001@north", "DATA")
    assert "WID-0001 at north: sku: too long" in exception["message"]
    assert accepted_stock(changes, refused.iloc[0:0]).equals(changes)


# --- sync log -----------------------------------------------------------------------------


def test_sync_log_body_keeps_to_the_portal_limits() -> None:
    errors = pd.DataFrame(
        {
            "entity_key": [f"ACC{i:05d}" for i in range(SYNC_LOG_MAX_ERRORS + 20)] + ["ACC00000"],
            "message": ["rejected"] * (SYNC_LOG_MAX_ERRORS + 20) + ["x" * 3000],
        }
    )

    body = sync_log_body(
        started_at=datetime(2026, 3, 1, 6, 0, tzinfo=UTC),
        finished_at=datetime(2026, 3, 1, 6, 4, 30),
        records_failed=len(errors),
        errors=errors,
    )

    ids = [entry["external_id"] for entry in body["errors"]]
    assert len(ids) == SYNC_LOG_MAX_ERRORS == len(set(ids))
    assert body["errors"][-1]["message"].endswith(
        "and 20 more records failed: see the exception queue"
    )
    assert body["errors"][0]["message"].startswith("rejected | xxx")
    assert len(body["errors"][0]["message"]) == 2000
    assert body["started_full_sync"] == "2026-03-01T06:00:00Z"
    assert body["last_full_sync"] == "2026-03-01T06:04:30Z"
    assert body["last_full_sync_succeeded"] is False
    assert set(body) == {
        "started_full_sync",
        "last_full_sync",
        "last_full_sync_succeeded",
        "errors",
    }


def test_a_clean_sync_is_reported_as_succeeded() -> None:
    body = sync_log_body(
        started_at=datetime(2026, 3, 1, 6, 0),
        finished_at=datetime(2026, 3, 1, 6, 1),
        records_failed=0,
    )
    assert body["last_full_sync_succeeded"] is True and body["errors"] == []
    interrupted = sync_log_body(
        started_at=datetime(2026, 3, 1, 6, 0),
        finished_at=datetime(2026, 3, 1, 6, 1),
        records_failed=0,
        completed=False,
    )
    assert interrupted["last_full_sync_succeeded"] is False
