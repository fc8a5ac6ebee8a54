"""The order rules (DESIGN.md), each proven on purchases as the portal sends them.

Purchases go through ``normalise_purchases`` and ``decide_orders`` exactly as a batch does, against
a small ERP held in DataFrames: pure functions, no server.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
import pytest

from b2b_pipeline.config.mappings import Mappings, load_mappings
from b2b_pipeline.connectors.sparklayer.purchases import read_purchases
from b2b_pipeline.domain.exceptions import to_payload
from b2b_pipeline.domain.order_rules import auto_account_code
from b2b_pipeline.domain.orders import (
    ErpSnapshot,
    OrderDecisions,
    decide_orders,
    normalise_purchases,
)
from b2b_pipeline.domain.schemas.orders import (
    PortalOrderLines,
    PortalOrders,
    SalesOrderLines,
    SalesOrders,
)

MAPPINGS = load_mappings()


def _account(code: str, **changes: Any) -> dict[str, Any]:
    record = {
        "account_code": code,
        "name": f"{code} Ltd",
        "email": None,
        "customer_group": "trade",
        "price_list_code": "PL-TRADE-GBP",
        "discount_percentage": 0.0,
        "payment_terms": "NET30",
        "tax_code": "STANDARD",
        "currency": "GBP",
        "credit_limit": 5000.0,
        "credit_hold": False,
        "active": True,
    }
    return record | changes


ERP = ErpSnapshot(
    customers=pd.DataFrame(
        [
            _account("ACME01"),
            _account("ACME02", price_list_code="PL-ACME02", discount_percentage=10.0),
            _account("HOLD01", credit_hold=True),
            _account("GONE01", active=False),
            _account("EXEMPT01", tax_code="EXEMPT"),
            _account("ODDTAX01", tax_code="LUXURY"),
            _account("EURO01", currency="EUR"),
        ]
    ),
    products=pd.DataFrame(
        {
            "sku": ["WID-0001", "WID-0002", "WID-0003", "WID-0005", "WID-OLD"],
            "name": ["Widget 1", "Widget 2", "Widget 3", "Widget 5", "Old widget"],
            "active": [True, True, True, True, False],
        }
    ),
    tax_codes=pd.DataFrame(
        {
            "code": ["STANDARD", "ZERO", "EXEMPT", "REVERSE_CHARGE", "LUXURY"],
            "description": ["Standard", "Zero", "Exempt", "Reverse charge", "Luxury"],
            "rate": [20.0, 0.0, 0.0, 0.0, 25.0],
        }
    ),
    price_lists=pd.DataFrame(
        {
            "code": ["PL-TRADE-GBP", "PL-ACME02"],
            "name": ["Trade", "Acme"],
            "currency": ["GBP", "GBP"],
            "parent_code": [None, "PL-TRADE-GBP"],
        }
    ),
    price_list_items=pd.DataFrame(
        [
            ("PL-TRADE-GBP", "WID-0001", 1, 12.40),
            ("PL-TRADE-GBP", "WID-0001", 10, 12.10),
            ("PL-TRADE-GBP", "WID-0002", 1, 5.00),
            ("PL-TRADE-GBP", "WID-0003", 1, 20.00),
            ("PL-ACME02", "WID-0001", 1, 11.00),
            # WID-0005 is in the catalogue but on no price list.
        ],
        columns=["price_list_code", "sku", "min_quantity", "unit_price"],
    ),
)

# Portal customers: sparklayer id -> accounting_id (None: a company that registered itself).
CUSTOMERS = {
    "c-acme01": ("ACME01", "Acme Ltd"),
    "c-acme02": ("ACME02", "Acme Two Ltd"),
    "c-hold01": ("HOLD01", "Held Ltd"),
    "c-gone01": ("GONE01", "Gone Ltd"),
    "c-exempt01": ("EXEMPT01", "Charity Ltd"),
    "c-oddtax01": ("ODDTAX01", "Odd Tax Ltd"),
    "c-euro01": ("EURO01", "Euro GmbH"),
    "c-newco": (None, "New Co Ltd"),
    "c-typo": ("ACME99", "Typo Ltd"),
}
PORTAL_CUSTOMERS = pd.DataFrame(
    {
        "id": list(CUSTOMERS),
        "accounting_id": [account for account, _ in CUSTOMERS.values()],
        "company_name": [name for _, name in CUSTOMERS.values()],
        "tax_exempt": [customer == "c-exempt01" for customer in CUSTOMERS],
    }
)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _money(value: Decimal | str, currency: str = "GBP") -> dict[str, str]:
    return {"number": str(value), "currency": currency}


def purchase(
    number: int,
    customer: str = "c-acme01",
    lines: list[tuple[str, int, str]] | None = None,
    *,
    tax_exempt: bool = False,
    currency: str = "GBP",
    total: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A purchase as SparkLayer serves it (contract v2 §5); totals follow the lines (20% tax
    unless exempt). ``lines`` are (sku, quantity, unit net): the wire carries only line totals."""
    lines = lines if lines is not None else [("WID-0001", 2, "12.40")]
    rate = Decimal(0) if tax_exempt else Decimal(20)
    items, gross = [], Decimal(0)
    for sku, quantity, unit in lines:
        net = _cents(Decimal(unit) * quantity)
        tax = _cents(net * rate / 100)
        gross += net + tax
        items.append(
            {
                "identifiers": {"sku": sku},
                "name_parent": sku,
                "quantity": quantity,
                "line_total": {
                    "total_net": _money(net, currency),
                    "total_tax": _money(tax, currency),
                    "total_gross": _money(net + tax, currency),
                    "discount_net": _money("0.00", currency),
                },
                "tax_lines": [],
            }
        )
    record = {
        "type": "order",
        "purchase_identifiers": {
            "sparklayer": f"p-{number}",
            "platform": "",
            "visible": f"SL-{100000 + number}",
            "internal": "",
        },
        "customer_identifiers": {"sparklayer": customer, "platform": CUSTOMERS[customer][0]},
        "payment_method": "on_account",
        "customer_reference": f"PO-{number}",
        "currency_code": currency,
        "dates": {
            "created_at": "2025-01-15T09:00:00Z",
            "updated_at": "2025-01-15T09:30:00Z",
            "placed_at": "2025-01-15T09:30:00Z",
        },
        "revision_date": "2025-01-15T09:30:00Z",
        "calculated_total": _money(total if total is not None else gross, currency),
        "calculated_fulfilment_status": "processing",
        "billing_address": {},
        "packages": [{"identifiers": {}, "line_items": items, "shipments": []}],
        "accounting_files": [],
        "custom_fields": [],
    }
    return record | fields


def line_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    return order["packages"][0]["line_items"]


def normalise(purchases: list[Any], customers: pd.DataFrame = PORTAL_CUSTOMERS):
    """What a batch does: the wire module reads the purchases, the domain normalises them."""
    return normalise_purchases(read_purchases(purchases), customers)


def decide(
    *purchases: dict[str, Any],
    mappings: Mappings = MAPPINGS,
    posted_refs: set[str] | None = None,
    overrides: pd.DataFrame | None = None,
    erp: ErpSnapshot = ERP,
    customers: pd.DataFrame = PORTAL_CUSTOMERS,
) -> OrderDecisions:
    batch = normalise(list(purchases), customers)
    assert batch.malformed.empty, batch.malformed["message"].tolist()
    return decide_orders(
        batch.orders,
        batch.lines,
        erp,
        mappings,
        posted_refs=posted_refs or set(),
        overrides=overrides,
    )


def only_exception(decisions: OrderDecisions) -> pd.Series:
    assert decisions.to_post.empty
    assert len(decisions.exceptions) == 1
    return decisions.exceptions.iloc[0]


def posted(decisions: OrderDecisions, order_id: str) -> pd.Series:
    match = decisions.to_post[decisions.to_post["external_ref"] == order_id]
    assert len(match) == 1, decisions.exceptions[["reason_code", "message"]].to_dict("records")
    return match.iloc[0]


def posted_lines(decisions: OrderDecisions, order_id: str) -> pd.DataFrame:
    lines = decisions.to_post_lines
    return lines[lines["external_ref"] == order_id].sort_values("line_no")


# --- rule 1: live purchase types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("order_unconfirmed", "not yet confirmed"),
        ("awaiting_approval", "waiting for approval"),
        ("quote", "a quote"),
        ("cart", "a cart"),
    ],
)
def test_unconfirmed_awaiting_approval_quotes_and_carts_are_filtered_not_queued(
    kind: str, said: str
) -> None:
    decisions = decide(purchase(1, type=kind))
    assert decisions.to_post.empty and decisions.exceptions.empty
    assert decisions.filtered["portal_order_id"].tolist() == ["p-1"]
    assert decisions.filtered["type"].tolist() == [kind]
    assert decisions.filtered["reason"].str.contains(said).all()


def test_an_order_cancelled_in_the_portal_before_posting_is_filtered() -> None:
    decisions = decide(purchase(1, calculated_fulfilment_status="cancelled"))
    assert decisions.to_post.empty and decisions.exceptions.empty
    assert decisions.filtered["reason"].tolist() == ["cancelled in the portal"]


def test_an_order_is_posted() -> None:
    decisions = decide(purchase(1))
    assert posted(decisions, "p-1")["account_code"] == "ACME01"
    assert posted(decisions, "p-1")["po_number"] == "PO-1"
    assert decisions.filtered.empty


def test_live_types_from_the_mapping_file_decide_what_is_posted() -> None:
    mappings = MAPPINGS.model_copy(update={"live_types": ["order", "order_unconfirmed"]})
    decisions = decide(purchase(1, type="order_unconfirmed"), mappings=mappings)
    assert posted(decisions, "p-1")["status"] == "TO_BE_INVOICED"


# --- rule 6: payment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "erp_status"),
    [
        ("on_account", "TO_BE_INVOICED"),
        ("invoice", "TO_BE_INVOICED"),
        ("platform_upfront", "PAID"),
    ],
)
def test_payment_method_sets_the_erp_status_never_pending_payment(
    method: str, erp_status: str
) -> None:
    decisions = decide(purchase(1, payment_method=method))
    assert posted(decisions, "p-1")["status"] == erp_status


@pytest.mark.parametrize(
    ("method", "named"),
    [("crypto", "'crypto'"), ("", "'(none)'"), (None, "'(none)'")],
    ids=["unknown-method", "empty-method", "no-method"],
)
def test_payment_method_without_a_mapping_is_a_mapping_exception_never_a_default(
    method: str | None, named: str
) -> None:
    row = only_exception(decide(purchase(1, payment_method=method)))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNMAPPED_PAYMENT_METHOD")
    assert named in row["message"] and "SL-100001" in row["message"]


def test_a_method_mapped_to_paid_needs_a_payment_covering_the_total() -> None:
    mappings = MAPPINGS.model_copy(
        update={"payment_methods": {**MAPPINGS.payment_methods, "invoice": "PAID"}}
    )
    row = only_exception(decide(purchase(1, payment_method="invoice"), mappings=mappings))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNMAPPED_PAYMENT_METHOD")
    assert "no payment covering its total" in row["message"]


# --- rule 2: account mapping --------------------------------------------------------------------


def test_company_without_accounting_id_is_queued_for_an_account_manager() -> None:
    order = purchase(1, customer="c-newco")
    row = only_exception(decide(order))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNMAPPED_ACCOUNT")
    assert row["account_code"] is None
    assert "New Co Ltd" in row["message"] and "SL-100001" in row["message"]
    assert json.loads(row["payload"]) == order


def test_accounting_id_naming_no_erp_account_is_queued_with_the_code() -> None:
    row = only_exception(decide(purchase(1, customer="c-typo")))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNKNOWN_ACCOUNT")
    assert "'ACME99'" in row["message"]


def test_auto_create_builds_one_erp_account_per_company_and_posts_to_it() -> None:
    auto = MAPPINGS.model_copy(update={"unmapped_customer_policy": "auto_create"})
    decisions = decide(
        purchase(1, customer="c-newco"), purchase(2, customer="c-newco"), mappings=auto
    )
    code = auto_account_code("New Co Ltd", "c-newco")
    assert code.startswith("AUTO-NEWCOLTD-")
    created = decisions.accounts_to_create
    assert created["account_code"].tolist() == [code]
    record = created.iloc[0]
    defaults = auto.auto_create_defaults
    assert (record["name"], record["price_list_code"], record["payment_terms"]) == (
        "New Co Ltd",
        defaults.price_list_code,
        defaults.payment_terms,
    )
    assert (record["tax_code"], record["currency"], record["credit_hold"]) == (
        "STANDARD",
        "GBP",
        False,
    )
    assert decisions.to_post["account_code"].tolist() == [code, code]


def test_auto_created_account_is_reused_not_created_twice() -> None:
    auto = MAPPINGS.model_copy(update={"unmapped_customer_policy": "auto_create"})
    code = auto_account_code("New Co Ltd", "c-newco")
    erp = ErpSnapshot(
        customers=pd.concat([ERP.customers, pd.DataFrame([_account(code)])], ignore_index=True),
        products=ERP.products,
        tax_codes=ERP.tax_codes,
        price_lists=ERP.price_lists,
        price_list_items=ERP.price_list_items,
    )
    decisions = decide(purchase(1, customer="c-newco"), mappings=auto, erp=erp)
    assert decisions.accounts_to_create.empty
    assert posted(decisions, "p-1")["account_code"] == code


def test_auto_create_does_not_paper_over_a_wrong_accounting_id() -> None:
    auto = MAPPINGS.model_copy(update={"unmapped_customer_policy": "auto_create"})
    decisions = decide(purchase(1, customer="c-typo"), mappings=auto)
    assert decisions.accounts_to_create.empty
    assert only_exception(decisions)["reason_code"] == "UNKNOWN_ACCOUNT"


# --- rule 3: authorisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "reason", "words"),
    [
        ("c-hold01", "ACCOUNT_ON_HOLD", "credit hold"),
        ("c-gone01", "ACCOUNT_INACTIVE", "inactive"),
    ],
)
def test_held_or_inactive_account_is_an_authorisation_exception(
    customer: str, reason: str, words: str
) -> None:
    row = only_exception(decide(purchase(1, customer=customer)))
    assert (row["category"], row["reason_code"]) == ("AUTHORISATION", reason)
    assert words in row["message"]
    assert row["account_code"] == CUSTOMERS[customer][0]


def test_held_account_message_gives_the_order_total() -> None:
    row = only_exception(decide(purchase(1, customer="c-hold01")))
    assert "£29.76" in row["message"]  # 2 × 12.40 = 24.80 net + 4.96 tax


# --- rule 4: catalogue, tax, currency -----------------------------------------------------------


def test_unknown_and_inactive_skus_are_named_in_one_exception() -> None:
    order = purchase(
        1, lines=[("WID-0001", 1, "12.40"), ("NOPE-1", 2, "1.00"), ("WID-OLD", 1, "3.00")]
    )
    row = only_exception(decide(order))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNKNOWN_SKU")
    assert "NOPE-1 (unknown)" in row["message"] and "WID-OLD (inactive)" in row["message"]
    assert "WID-0001" not in row["message"]


def test_tax_exempt_in_portal_but_taxable_in_erp_is_a_tax_treatment_mismatch() -> None:
    exempt_in_portal = PORTAL_CUSTOMERS.assign(
        tax_exempt=PORTAL_CUSTOMERS["id"].isin(["c-acme01", "c-exempt01"])
    )
    row = only_exception(
        decide(purchase(1, customer="c-acme01", tax_exempt=True), customers=exempt_in_portal)
    )
    assert (row["category"], row["reason_code"]) == ("MAPPING", "TAX_TREATMENT_MISMATCH")
    assert "tax exempt" in row["message"] and "STANDARD" in row["message"]


def test_exempt_account_ordering_without_tax_is_posted_with_no_tax() -> None:
    decisions = decide(purchase(1, customer="c-exempt01", tax_exempt=True))
    header = posted(decisions, "p-1")
    assert (header["tax_code"], header["tax_total"], header["gross_total"]) == (
        "EXEMPT",
        0.0,
        24.80,
    )


def test_tax_code_missing_from_the_mapping_file_is_queued() -> None:
    row = only_exception(decide(purchase(1, customer="c-oddtax01")))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "UNMAPPED_TAX_CODE")
    assert "'LUXURY'" in row["message"]


def test_order_in_another_currency_than_the_account_is_queued() -> None:
    row = only_exception(decide(purchase(1, customer="c-euro01", currency="GBP")))
    assert (row["category"], row["reason_code"]) == ("MAPPING", "CURRENCY_MISMATCH")
    assert "EUR" in row["message"] and "GBP" in row["message"]


# --- rule 5: pricing ----------------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "unit"), [(9, "12.40"), (10, "12.10"), (11, "12.10")])
def test_quantity_break_prices_are_accepted_either_side_of_the_break(
    quantity: int, unit: str
) -> None:
    decisions = decide(purchase(1, lines=[("WID-0001", quantity, unit)]))
    line = posted_lines(decisions, "p-1").iloc[0]
    assert line["unit_price"] == float(unit)
    assert line["line_net"] == float(_cents(Decimal(unit) * quantity))


def test_customer_list_and_discount_give_the_account_its_own_prices() -> None:
    # ACME02: own list 11.00 on WID-0001, parent list 5.00 on WID-0002, both less 10%.
    order = purchase(
        1, customer="c-acme02", lines=[("WID-0001", 3, "9.90"), ("WID-0002", 1, "4.50")]
    )
    decisions = decide(order)
    assert posted_lines(decisions, "p-1")["unit_price"].tolist() == [9.90, 4.50]
    header = posted(decisions, "p-1")
    assert (header["net_total"], header["tax_total"], header["gross_total"]) == (
        34.20,
        6.84,
        41.04,
    )


def test_mispriced_order_names_both_totals_and_the_lines_that_differ() -> None:
    order = purchase(
        100042, lines=[("WID-0001", 10, "12.40"), ("WID-0002", 2, "5.00")], total="160.80"
    )
    row = only_exception(decide(order))
    assert (row["category"], row["reason_code"]) == ("PRICING", "PRICE_MISMATCH")
    assert row["message"] == (
        "Order SL-200042 for ACME01: portal total £160.80, ERP calculates £157.20 "
        "(difference £3.60). Lines that differ: WID-0001 × 10 portal 12.40 vs ERP 12.10. "
        "Approve with the ERP or the portal price, or fix the price list and retry."
    )


@pytest.mark.parametrize("total", ["29.77", "29.75"])
def test_checkout_total_within_tolerance_passes_at_the_erp_price(total: str) -> None:
    decisions = decide(purchase(1, total=total))  # the ERP makes it 29.76; tolerance 0.01
    assert posted(decisions, "p-1")["gross_total"] == 29.76


def test_checkout_total_off_its_own_lines_is_a_data_exception_not_a_price_difference() -> None:
    batch = normalise([purchase(1, total="29.78")])  # lines (and the ERP) make it 29.76
    assert batch.orders.empty
    assert batch.malformed["reason_code"].tolist() == ["TOTALS_DO_NOT_ADD_UP"]


def test_sku_on_no_price_list_is_a_no_erp_price_exception() -> None:
    row = only_exception(decide(purchase(1, lines=[("WID-0005", 4, "3.00")])))
    assert (row["category"], row["reason_code"]) == ("PRICING", "NO_ERP_PRICE")
    assert "WID-0005 × 4" in row["message"] and "PL-TRADE-GBP" in row["message"]


# --- overrides (approved exceptions, retried) ---------------------------------------------------


MISPRICED = purchase(7, lines=[("WID-0001", 10, "12.40")])  # the ERP says 12.10


def test_approved_erp_price_posts_at_the_erp_price() -> None:
    overrides = pd.DataFrame({"portal_order_id": ["p-7"], "accept": ["erp_price"]})
    decisions = decide(MISPRICED, overrides=overrides)
    assert posted_lines(decisions, "p-7")["unit_price"].tolist() == [12.10]
    assert posted(decisions, "p-7")["gross_total"] == 145.20


def test_approved_portal_price_posts_at_the_portal_price() -> None:
    # The shape the order intake passes: one decision dict per approved exception.
    overrides = pd.DataFrame({"portal_order_id": ["p-7"], "decision": [{"accept": "portal_price"}]})
    decisions = decide(MISPRICED, overrides=overrides)
    line = posted_lines(decisions, "p-7").iloc[0]
    assert (line["unit_price"], line["line_net"], line["tax_amount"]) == (12.40, 124.00, 24.80)
    assert posted(decisions, "p-7")["gross_total"] == 148.80


def test_approved_account_code_maps_an_unmapped_company() -> None:
    overrides = pd.DataFrame(
        {"portal_order_id": ["p-1"], "decision": [json.dumps({"account_code": "ACME01"})]}
    )
    decisions = decide(purchase(1, customer="c-newco"), overrides=overrides)
    assert posted(decisions, "p-1")["account_code"] == "ACME01"


def test_approved_credit_hold_override_posts_on_hold() -> None:
    overrides = pd.DataFrame({"portal_order_id": ["p-1"], "post_on_hold": [True]})
    decisions = decide(purchase(1, customer="c-hold01"), overrides=overrides)
    assert posted(decisions, "p-1")["status"] == "ON_HOLD"


def test_an_override_settles_only_its_own_rule() -> None:
    # Approving the price of an order from a held account does not release the hold.
    overrides = pd.DataFrame({"portal_order_id": ["p-1"], "accept": ["portal_price"]})
    decisions = decide(purchase(1, customer="c-hold01"), overrides=overrides)
    assert only_exception(decisions)["reason_code"] == "ACCOUNT_ON_HOLD"


# --- the batch as a whole -----------------------------------------------------------------------


def test_an_order_gets_only_the_first_failing_rule() -> None:
    # Held account, unknown SKU and mispriced at once: the hold (rule 3) is what is reported.
    order = purchase(1, customer="c-hold01", lines=[("NOPE-1", 1, "1.00"), ("WID-0001", 1, "99")])
    row = only_exception(decide(order))
    assert row["reason_code"] == "ACCOUNT_ON_HOLD"


def test_already_posted_order_is_counted_not_posted_again() -> None:
    decisions = decide(purchase(1), purchase(2), posted_refs={"p-1"})
    assert decisions.already_posted["portal_order_id"].tolist() == ["p-1"]
    assert decisions.to_post["external_ref"].tolist() == ["p-2"]


def test_every_order_of_a_mixed_batch_has_exactly_one_outcome() -> None:
    batch = [
        purchase(1),
        purchase(2, type="quote"),
        purchase(3, customer="c-newco"),
        purchase(4, customer="c-hold01"),
        purchase(5, lines=[("WID-0001", 2, "1.00")]),  # the ERP says 12.40
        purchase(6, customer="c-acme02", lines=[("WID-0002", 1, "4.50")]),
        purchase(7),
    ]
    decisions = decide(*batch, posted_refs={"p-7"})
    outcomes = {
        "to_post": decisions.to_post["external_ref"].tolist(),
        "filtered": decisions.filtered["portal_order_id"].tolist(),
        "exceptions": decisions.exceptions["entity_key"].tolist(),
        "already_posted": decisions.already_posted["portal_order_id"].tolist(),
    }
    assert outcomes == {
        "to_post": ["p-1", "p-6"],
        "filtered": ["p-2"],
        "exceptions": ["p-3", "p-4", "p-5"],
        "already_posted": ["p-7"],
    }
    assert decisions.counts() == {
        "to_post": 2,
        "already_posted": 1,
        "filtered": 1,
        "exceptions": 3,
        "accounts_to_create": 0,
    }
    assert set(decisions.to_post_lines["external_ref"]) == {"p-1", "p-6"}


def test_decisions_have_the_shapes_the_erp_gateway_and_audit_store_take() -> None:
    batch = normalise(
        [purchase(1, lines=[("WID-0001", 1, "12.40"), ("WID-0002", 3, "5.00")]), purchase(2)]
    )
    PortalOrders.validate(batch.orders)
    PortalOrderLines.validate(batch.lines)
    decisions = decide_orders(batch.orders, batch.lines, ERP, MAPPINGS, posted_refs=set())
    SalesOrders.validate(decisions.to_post)
    SalesOrderLines.validate(decisions.to_post_lines)
    assert decisions.to_post["order_date"].iloc[0] == pd.Timestamp("2025-01-15T09:30:00Z")


# --- malformed purchases --------------------------------------------------------------------------


def _without_lines() -> dict[str, Any]:
    return purchase(2, packages=[{"identifiers": {}, "line_items": [], "shipments": []}])


def _comma_money() -> dict[str, Any]:
    return purchase(2, calculated_total={"number": "12,50", "currency": "GBP"})


def _zero_quantity() -> dict[str, Any]:
    order = purchase(2)
    line_items(order)[0]["quantity"] = 0
    return order


def _fractional_quantity() -> dict[str, Any]:
    order = purchase(2)
    line_items(order)[0]["quantity"] = 2.5
    return order


def _no_id() -> dict[str, Any]:
    order = purchase(2)
    order["purchase_identifiers"]["sparklayer"] = ""
    return order


def _list_not_object() -> dict[str, Any]:
    order = purchase(2)
    line_items(order)[0] = ["WID-0001", 2]
    return order


def _no_customer() -> dict[str, Any]:
    return purchase(2, customer_identifiers={"sparklayer": None, "platform": None})


def _hostile_company() -> tuple[dict[str, Any], pd.DataFrame]:
    customers = pd.concat(
        [
            PORTAL_CUSTOMERS,
            pd.DataFrame(
                {
                    "id": ["c-long"],
                    "accounting_id": ["ACME01"],
                    "company_name": ["A" * 10_000],
                    "tax_exempt": [False],
                }
            ),
        ],
        ignore_index=True,
    )
    return purchase(2, customer_identifiers={"sparklayer": "c-long"}), customers


@pytest.mark.parametrize(
    ("make", "field_named"),
    [
        (_without_lines, "the purchase has no line items"),
        (_comma_money, 'calculated_total "12,50" is not an amount'),
        (lambda: purchase(2, currency="XXX"), 'currency_code "XXX" is not a currency the ERP'),
        (lambda: purchase(2, currency="gbp"), 'code "gbp" is not a 3-letter currency code'),
        (_zero_quantity, "line 1 quantity 0 is not a positive whole number"),
        (_fractional_quantity, "line 1 quantity 2.5 is not a positive whole number"),
        (
            lambda: purchase(2, customer_reference="PO-1\x00\x1b[2J"),
            "customer_reference (PO number) contains control",
        ),
        (
            lambda: purchase(2, customer_reference="P" * 101),
            "customer_reference (PO number) is 101 characters long",
        ),
        (_no_id, "purchase_identifiers.sparklayer is missing"),
        (lambda: purchase(2, type=""), "type is missing"),
        (_list_not_object, "packages[0].line_items[0] is not an object"),
        (_no_customer, "customer_identifiers.sparklayer is missing"),
        (_hostile_company, "customer company_name is 10,000 characters long"),
    ],
    ids=[
        "no-lines", "comma-money", "unknown-currency", "lowercase-currency", "zero-quantity",
        "fractional-quantity", "control-characters-in-po", "oversized-po", "no-id", "no-type",
        "line-is-a-list", "no-customer", "10k-company-name",
    ],
)  # fmt: skip
def test_malformed_purchase_is_a_data_exception_and_the_batch_goes_on(
    make: Any, field_named: str
) -> None:
    made = make()
    bad, customers = made if isinstance(made, tuple) else (made, PORTAL_CUSTOMERS)
    good = purchase(1)
    batch = normalise([good, bad, purchase(3)], customers)

    assert batch.orders["portal_order_id"].tolist() == ["p-1", "p-3"]
    assert set(batch.lines["portal_order_id"]) == {"p-1", "p-3"}
    assert len(batch.malformed) == 1
    row = batch.malformed.iloc[0]
    assert (row["category"], row["reason_code"]) == ("DATA", "MALFORMED_ORDER")
    assert field_named in row["message"]
    assert row["payload"] == to_payload(bad)
    assert "\x00" not in row["message"] and len(row["message"]) < 1000
    decisions = decide_orders(batch.orders, batch.lines, ERP, MAPPINGS, posted_refs=set())
    assert decisions.to_post["external_ref"].tolist() == ["p-1", "p-3"]


def test_purchase_that_is_not_an_object_is_reported_once_with_a_stable_key() -> None:
    first = normalise(["not a purchase", purchase(1)])
    again = normalise(["not a purchase"])
    row = first.malformed.iloc[0]
    assert row["message"].count(";") == 0 and "not a JSON object" in row["message"]
    assert row["entity_key"] == again.malformed.iloc[0]["entity_key"]
    assert first.orders["portal_order_id"].tolist() == ["p-1"]


def test_a_json_array_in_the_purchase_list_is_queued_and_the_other_orders_go_on() -> None:
    batch = normalise([["p-9", "order"], purchase(1), purchase(3)])
    assert batch.orders["portal_order_id"].tolist() == ["p-1", "p-3"]
    assert batch.malformed["reason_code"].tolist() == ["MALFORMED_ORDER"]
    assert "not a JSON object" in batch.malformed.iloc[0]["message"]


def test_lines_of_every_package_are_read_with_unit_net_from_the_line_total() -> None:
    order = purchase(1, lines=[("WID-0001", 3, "12.40")])
    second = purchase(1, lines=[("WID-0002", 4, "5.00")])
    order["packages"].append(second["packages"][0])
    order["calculated_total"] = _money("68.64")  # 37.20 + 20.00 net, plus 20% tax
    batch = normalise([order])
    assert batch.malformed.empty, batch.malformed["message"].tolist()
    assert batch.lines["sku"].tolist() == ["WID-0001", "WID-0002"]
    assert batch.lines["line_no"].tolist() == [1, 2]
    assert batch.lines["portal_unit_price"].tolist() == [12.40, 5.00]


def test_an_order_whose_lines_do_not_add_up_to_its_total_is_a_data_exception() -> None:
    batch = normalise([purchase(1), purchase(2, total="100.00")])
    assert batch.orders["portal_order_id"].tolist() == ["p-1"]
    row = batch.malformed.iloc[0]
    assert (row["category"], row["reason_code"]) == ("DATA", "TOTALS_DO_NOT_ADD_UP")
    assert "SL-100002" in row["message"] and "29.76" in row["message"]
    assert "100.00" in row["message"]


def test_unknown_fields_are_kept_in_the_payload() -> None:
    order = purchase(1, loyalty={"points": 12}, name_parent_custom="x")
    batch = normalise([order])
    assert json.loads(batch.orders.iloc[0]["payload"])["loyalty"] == {"points": 12}


def test_the_newest_version_of_a_purchase_listed_twice_is_kept() -> None:
    older = purchase(1, type="quote")
    newer = purchase(1, type="order")
    batch = normalise([older, newer])
    assert batch.orders["type"].tolist() == ["order"]
    assert len(batch.lines) == 1


def test_normalised_order_carries_the_mapping_and_portal_totals() -> None:
    order = purchase(
        1, customer="c-acme02", lines=[("WID-0001", 3, "9.90"), ("WID-0002", 1, "4.50")]
    )
    batch = normalise([order])
    row = batch.orders.iloc[0]
    assert (row["accounting_id"], row["company_name"], row["visible_id"]) == (
        "ACME02",
        "Acme Two Ltd",
        "SL-100001",
    )
    assert (row["portal_net"], row["portal_tax"], row["portal_gross"]) == (34.20, 6.84, 41.04)
    assert json.loads(row["payload"]) == order
    assert batch.lines["line_no"].tolist() == [1, 2]


def test_an_empty_batch_gives_empty_frames_of_the_right_shape() -> None:
    batch = normalise([])
    PortalOrders.validate(batch.orders)
    PortalOrderLines.validate(batch.lines)
    decisions = decide_orders(batch.orders, batch.lines, ERP, MAPPINGS, posted_refs=set())
    SalesOrders.validate(decisions.to_post)
    SalesOrderLines.validate(decisions.to_post_lines)
    assert sum(decisions.counts().values()) == 0
