"""Purchases in the simulator (contract v2 §5) and the buyer's endpoints (§7), over real HTTP.

What the pipeline's intake, write-back and month-end rely on: the v2 document exactly (no
top-level ``id``, no ``status``), a newest-first list with the documented filters, lookups by
every identifier, PUT with its required fields and refusals (400 / 403 / 409, create on a miss),
transactions, and buyers placing, confirming and cancelling purchases.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from b2b_pipeline.simulator.server import SimulatorServer
from b2b_pipeline_tests.test_simulator import (
    PortalApi,
    open_portal_api,
    order,
    place_order,
    problem,
    properties,
    seed_trade_customer,
    sparklayer_id,
)

NUT = [{"sku": "NUT-10", "quantity": 1}]

V2_KEYS = {
    "type",
    "purchase_identifiers",
    "customer_identifiers",
    "payment_method",
    "customer_reference",
    "currency_code",
    "dates",
    "revision_date",
    "calculated_total",
    "calculated_fulfilment_status",
    "billing_address",
    "packages",
    "accounting_files",
    "custom_fields",
}


@pytest.fixture
def api(simulator: SimulatorServer) -> Iterator[PortalApi]:
    yield from open_portal_api(simulator)


def as_read_less_calculated(purchase: dict[str, Any]) -> dict[str, Any]:
    """A PUT body as the client's write-back builds it: the purchase less ``calculated_*``."""
    body = copy.deepcopy(purchase)
    return {key: value for key, value in body.items() if not key.startswith("calculated_")}


def put(api: PortalApi, purchase_id: str, body: dict[str, Any], lookup: str = "sparklayer"):
    return api.call("PUT", f"/api/v1/purchases/{lookup}/{purchase_id}", body)


def listed(api: PortalApi, **params: Any) -> list[str]:
    response = api.call("GET", "/api/v1/purchases", **params)
    assert response.status_code == 200, response.text
    return [sparklayer_id(purchase) for purchase in response.json()]


# -- the document (§5) -------------------------------------------------------------------------
def test_an_order_is_served_in_the_v2_document_shape_and_get_returns_it_unchanged(api):
    customer = seed_trade_customer(api)
    placed = order(
        api,
        customer_reference="PO-4471",
        lines=[{"sku": "BOLT-10", "quantity": 60}, {"sku": "NUT-10", "quantity": 3}],
    )
    assert set(placed) == V2_KEYS  # no id, status, po_number, payment_status, line_items...
    identifiers = placed["purchase_identifiers"]
    assert identifiers["platform"] == "" and identifiers["internal"] == ""
    assert identifiers["visible"] == "SL-100001"
    assert placed["customer_identifiers"] == {"sparklayer": customer["id"], "platform": "ACME01"}
    assert placed["type"] == "order" and placed["payment_method"] == "on_account"
    assert placed["customer_reference"] == "PO-4471" and placed["currency_code"] == "GBP"
    assert placed["calculated_fulfilment_status"] == "processing"
    dates = placed["dates"]
    assert dates["created_at"] == dates["updated_at"] == dates["placed_at"]
    assert dates["updated_at"].endswith("Z") and placed["revision_date"] == dates["updated_at"]
    [package] = placed["packages"]
    assert package["identifiers"] == {} and package["shipments"] == []
    bolt, nut = package["line_items"]
    assert set(bolt) == {"identifiers", "name_parent", "quantity", "line_total", "tax_lines"}
    assert bolt["identifiers"] == {"sku": "BOLT-10"} and bolt["quantity"] == 60
    assert "unit_price" not in bolt  # unit net = total_net / quantity
    assert bolt["tax_lines"] == [
        {"title": "VAT", "amount": {"number": "21.60", "currency": "GBP"}, "rate": 20}
    ]
    assert nut["line_total"]["total_gross"] == {"number": "1.30", "currency": "GBP"}
    for lookup, identifier in (
        ("sparklayer", sparklayer_id(placed)),
        ("visible", "SL-100001"),
    ):
        assert api.call("GET", f"/api/v1/purchases/{lookup}/{identifier}").json() == placed


def test_an_order_is_priced_by_the_first_list_with_discount_and_tax(api):
    seed_trade_customer(api)
    placed = order(
        api, lines=[{"sku": "BOLT-10", "quantity": 60}, {"sku": "NUT-10", "quantity": 3}]
    )
    bolt, nut = placed["packages"][0]["line_items"]
    # BOLT-10 at 60: the first list (acme-special) prices it, 2.00 from 50 (the group list's
    # 2.20 is not looked at), less 10% -> 1.80; 60 x 1.80 = 108.00 net, 21.60 VAT.
    assert bolt["line_total"] == {
        "total_net": {"number": "108.00", "currency": "GBP"},
        "total_tax": {"number": "21.60", "currency": "GBP"},
        "total_gross": {"number": "129.60", "currency": "GBP"},
        "discount_net": {"number": "12.00", "currency": "GBP"},
    }
    # NUT-10 is only in the group list: 0.40 less 10% = 0.36; 3 x 0.36 = 1.08; VAT 0.22.
    assert nut["line_total"]["total_net"]["number"] == "1.08"
    assert nut["line_total"]["total_tax"]["number"] == "0.22"
    assert placed["calculated_total"] == {"number": "130.90", "currency": "GBP"}


def test_a_tax_exempt_card_order_has_no_tax_and_an_applied_transaction_of_its_total(api):
    seed_trade_customer(api, tax_exempt=True, discount_percentage=0)
    card = order(api, payment_method="platform_upfront", lines=[{"sku": "NUT-10", "quantity": 10}])
    [line] = card["packages"][0]["line_items"]
    assert line["tax_lines"] == [] and line["line_total"]["total_tax"]["number"] == "0.00"
    assert card["calculated_total"]["number"] == "4.00"
    path = f"/api/v1/purchases/sparklayer/{sparklayer_id(card)}/transactions"
    [transaction] = api.call("GET", path).json()
    assert set(transaction) == {"id", "total", "apply_to_balance", "created_at"}
    assert transaction["total"] == card["calculated_total"]
    assert transaction["apply_to_balance"] is True
    assert transaction["created_at"] == card["dates"]["placed_at"]
    on_account = order(api, lines=NUT)
    visible = on_account["purchase_identifiers"]["visible"]
    assert api.call("GET", f"/api/v1/purchases/visible/{visible}/transactions").json() == []
    problem(api.call("GET", "/api/v1/purchases/visible/SL-999999/transactions"), 404)


def test_the_standard_tax_rate_is_configurable(api):
    seed_trade_customer(api, discount_percentage=0)
    api.sim("PUT", "/config", {"standard_tax_rate": 5})
    placed = order(api, lines=[{"sku": "NUT-10", "quantity": 10}])
    [line] = placed["packages"][0]["line_items"]
    assert line["line_total"]["total_tax"]["number"] == "0.20"
    assert line["tax_lines"][0]["rate"] == 5


def test_a_buyer_given_unit_price_is_used_as_is(api):
    seed_trade_customer(api)
    placed = order(api, lines=[{"sku": "ANY-SKU", "quantity": 2, "unit_price": 3.333}])
    # The unit price is rounded first, then multiplied: 2 x 3.33, not round(6.666); no discount.
    line_total = placed["packages"][0]["line_items"][0]["line_total"]
    assert line_total["total_net"]["number"] == "6.66"
    assert line_total["discount_net"]["number"] == "0.00"


def test_an_unknown_sku_without_unit_price_is_400_and_nothing_is_stored(api):
    seed_trade_customer(api)
    response = place_order(
        api, lines=[{"sku": "BOLT-10", "quantity": 1}, {"sku": "GHOST", "quantity": 1}]
    )
    assert properties(problem(response, 400)) == {"lines[1].sku"}
    assert api.sim("GET", "/state").json()["purchases"] == 0


def test_an_order_of_more_than_250_lines_is_400_naming_the_limit(api):
    seed_trade_customer(api)
    lines = [{"sku": f"SKU-{i}", "quantity": 1, "unit_price": 1} for i in range(251)]
    document = problem(place_order(api, lines=lines), 400)
    assert document["errors"][0]["code"] == "limit-exceeded"
    assert "250 line items" in document["detail"]
    assert order(api, lines=lines[:250])["calculated_total"]["number"] == "300.00"


def test_an_order_from_a_group_with_ordering_off_is_403(api):
    customer = seed_trade_customer(api)
    api.call("PATCH", "/api/v1/customer-groups/trade", {"ordering_enabled": False})
    response = place_order(api, customer=customer["id"], lines=NUT)
    assert problem(response, 403)["errors"][0]["code"] == "ordering-disabled"
    assert api.sim("GET", "/state").json()["purchases"] == 0


def test_a_payment_method_the_group_does_not_allow_is_403(api):
    seed_trade_customer(api)
    api.call("PATCH", "/api/v1/customer-groups/trade", {"payment_methods": ["platform_upfront"]})
    response = place_order(api, payment_method="invoice", lines=NUT)
    assert problem(response, 403)["errors"][0]["code"] == "payment-method-not-allowed"
    assert place_order(api, payment_method="platform_upfront", lines=NUT).status_code == 201


def test_pay_on_account_over_the_credit_limit_is_403_and_a_card_order_is_not(api):
    terms = {"credit_limit": 100, "currency_code": "GBP", "net_terms": 30, "balance": 90}
    seed_trade_customer(api, payment_on_account=terms, discount_percentage=0)
    assert place_order(api, lines=[{"sku": "NUT-10", "quantity": 10}]).status_code == 201  # 4.80
    large = place_order(api, lines=[{"sku": "BOLT-10", "quantity": 10}])  # 2.40 x 10 + VAT
    assert problem(large, 403)["errors"][0]["code"] == "credit-limit-exceeded"
    by_card = place_order(
        api, payment_method="platform_upfront", lines=[{"sku": "BOLT-10", "quantity": 10}]
    )
    assert by_card.status_code == 201


def test_an_order_for_an_unknown_customer_is_404_and_bad_fields_are_400(api):
    seed_trade_customer(api)
    problem(place_order(api, customer="NOBODY", lines=NUT), 404)
    bad = place_order(api, type="draft", payment_method="card", lines=[{"sku": "X"}])
    assert properties(problem(bad, 400)) == {"type", "payment_method", "lines[0].quantity"}


# -- buyers moving purchases on (§7) -----------------------------------------------------------
def test_a_quote_has_no_placed_at_until_it_is_confirmed_into_an_order(api):
    seed_trade_customer(api)
    quote = order(api, type="quote", lines=NUT)
    assert quote["type"] == "quote" and quote["dates"]["placed_at"] is None
    assert quote["calculated_fulfilment_status"] == ""
    confirmed = api.sim("PATCH", f"/purchases/{sparklayer_id(quote)}", {"type": "order"})
    assert confirmed.status_code == 200
    body = confirmed.json()
    assert body["type"] == "order" and body["calculated_fulfilment_status"] == "processing"
    assert body["dates"]["placed_at"] == body["dates"]["updated_at"]
    assert body["dates"]["updated_at"] > quote["dates"]["updated_at"]
    assert body["revision_date"] == body["dates"]["updated_at"]
    assert body["dates"]["created_at"] == quote["dates"]["created_at"]
    path = f"/api/v1/purchases/sparklayer/{sparklayer_id(quote)}"
    assert api.call("GET", path).json() == body


def test_an_unconfirmed_order_keeps_its_placed_at_when_confirmed(api):
    seed_trade_customer(api)
    unconfirmed = order(api, type="order_unconfirmed", lines=NUT)
    placed_at = unconfirmed["dates"]["placed_at"]
    assert placed_at is not None
    visible = unconfirmed["purchase_identifiers"]["visible"]
    confirmed = api.sim("PATCH", f"/purchases/{visible}", {"type": "order"}).json()
    assert confirmed["type"] == "order" and confirmed["dates"]["placed_at"] == placed_at


def test_an_order_is_cancelled_by_its_fulfilment_status(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    change = {"calculated_fulfilment_status": "cancelled"}
    cancelled = api.sim("PATCH", f"/purchases/{sparklayer_id(placed)}", change).json()
    assert cancelled["type"] == "order" and cancelled["calculated_fulfilment_status"] == "cancelled"
    assert listed(api, **{"dates[last_updated][gte]": cancelled["dates"]["updated_at"]}) == [
        sparklayer_id(placed)
    ]


def test_a_card_quote_is_paid_when_it_is_confirmed(api):
    seed_trade_customer(api)
    quote = order(api, type="quote", payment_method="platform_upfront", lines=NUT)
    path = f"/api/v1/purchases/sparklayer/{sparklayer_id(quote)}/transactions"
    assert api.call("GET", path).json() == []
    api.sim("PATCH", f"/purchases/{sparklayer_id(quote)}", {"type": "order"})
    assert [t["total"] for t in api.call("GET", path).json()] == [quote["calculated_total"]]


def test_a_purchase_change_is_refused_when_it_names_nothing_valid(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    path = f"/purchases/{sparklayer_id(placed)}"
    assert properties(problem(api.sim("PATCH", path, {}), 400)) == {"type"}
    bad = {"type": "confirmed", "calculated_fulfilment_status": "gone"}
    assert properties(problem(api.sim("PATCH", path, bad), 400)) == {
        "type",
        "calculated_fulfilment_status",
    }
    problem(api.sim("PATCH", "/purchases/SL-999999", {"type": "order"}), 404)


def test_a_backdated_order_keeps_its_placed_at_and_is_stamped_now(api):
    seed_trade_customer(api)
    placed = order(api, placed_at="2025-01-15T10:30:00+01:00", lines=NUT)
    assert placed["dates"]["placed_at"] == "2025-01-15T09:30:00.000000Z"
    assert placed["dates"]["created_at"] == placed["dates"]["placed_at"]
    assert placed["dates"]["updated_at"] > "2025-02"


# -- the list: newest first, filters, paging (§5) ------------------------------------------------
def _five_purchases(api: PortalApi) -> list[dict[str, Any]]:
    seed_trade_customer(api)
    return [
        order(api, type=kind, lines=NUT)
        for kind in ("order", "quote", "order_unconfirmed", "cart", "awaiting_approval")
    ]


def test_purchases_are_listed_newest_first_in_offset_pages(api):
    ids = [sparklayer_id(p) for p in _five_purchases(api)]
    newest_first = ids[::-1]
    pages = [listed(api, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert pages[0] + pages[1] + pages[2] == newest_first
    assert len(pages[2]) == 1  # a short page is the last
    assert listed(api, limit=2, offset=6) == []
    assert listed(api) == newest_first
    assert listed(api, order_by="-updated_at") == newest_first
    assert listed(api, order_by="updated_at") == ids
    assert listed(api, order_by="updated_at", limit=2, offset=2) == ids[2:4]
    problem(api.call("GET", "/api/v1/purchases", order_by="created_at"), 400)
    problem(api.call("GET", "/api/v1/purchases", offset=-1), 400)


def test_a_change_moves_a_purchase_to_the_head_of_the_list(api):
    purchases = _five_purchases(api)
    oldest = sparklayer_id(purchases[0])
    api.sim("PATCH", f"/purchases/{oldest}", {"calculated_fulfilment_status": "cancelled"})
    assert listed(api, limit=1) == [oldest]


def test_the_list_filters_by_type(api):
    purchases = _five_purchases(api)
    assert listed(api, type="quote") == [sparklayer_id(purchases[1])]
    assert listed(api, type="order_unconfirmed", order_by="updated_at") == [
        sparklayer_id(purchases[2])
    ]
    assert listed(api, type="order", offset=1) == []
    problem(api.call("GET", "/api/v1/purchases", type="confirmed"), 400)


def test_the_list_filters_by_last_updated_bounds_inclusively(api):
    purchases = _five_purchases(api)
    ids = [sparklayer_id(p) for p in purchases]
    stamps = [p["dates"]["updated_at"] for p in purchases]
    assert listed(api, **{"dates[last_updated][gte]": stamps[3]}) == [ids[4], ids[3]]
    assert listed(api, **{"dates[last_updated][lte]": stamps[1]}) == [ids[1], ids[0]]
    window = {"dates[last_updated][gte]": stamps[1], "dates[last_updated][lte]": stamps[3]}
    assert listed(api, **window) == [ids[3], ids[2], ids[1]]
    assert listed(api, **window, limit=1, offset=1) == [ids[2]]
    assert listed(api, **window, order_by="updated_at", limit=2) == [ids[1], ids[2]]
    # Another spelling of the same instant is the same bound.
    same_instant = stamps[3].replace("Z", "+00:00")
    assert listed(api, **{"dates[last_updated][gte]": same_instant}) == [ids[4], ids[3]]
    document = problem(
        api.call("GET", "/api/v1/purchases", **{"dates[last_updated][gte]": "x"}), 400
    )
    assert properties(document) == {"dates[last_updated][gte]"}


def test_the_list_filters_by_placed_date_and_leaves_out_unplaced_purchases(api):
    seed_trade_customer(api)
    january = order(api, placed_at="2025-01-10T12:00:00Z", lines=NUT)
    february = order(api, placed_at="2025-02-10T12:00:00Z", lines=NUT)
    order(api, type="quote", lines=NUT)  # never placed
    assert listed(api, **{"dates[placed][gte]": "2025-02-01T00:00:00Z"}) == [
        sparklayer_id(february)
    ]
    assert listed(api, **{"dates[placed][lte]": "2025-01-31T23:59:59Z"}) == [sparklayer_id(january)]
    both = {
        "dates[placed][gte]": "2025-01-01T00:00:00Z",
        "dates[placed][lte]": "2025-12-31T00:00:00Z",
    }
    assert listed(api, **both) == [sparklayer_id(february), sparklayer_id(january)]
    problem(api.call("GET", "/api/v1/purchases", **{"dates[placed][lte]": "soon"}), 400)


def test_the_list_filters_by_customer(api):
    acme = seed_trade_customer(api)
    other = api.call(
        "PUT",
        "/api/v2/customers/platform/OTHER1",
        {"external_id": "OTHER1", "email": "o@x.example", "price_lists": ["trade-gbp"]},
    ).json()
    mine = order(api, lines=NUT)
    theirs = order(api, customer="OTHER1", lines=NUT)
    mine_again = order(api, type="quote", lines=NUT)
    by_acme = {"customer_identifiers[sparklayer]": acme["id"]}
    assert listed(api, **by_acme) == [sparklayer_id(mine_again), sparklayer_id(mine)]
    assert listed(api, **by_acme, type="order") == [sparklayer_id(mine)]
    assert listed(api, **{"customer_identifiers[sparklayer]": other["id"]}) == [
        sparklayer_id(theirs)
    ]
    assert listed(api, **{"customer_identifiers[sparklayer]": "nobody"}) == []


# -- lookups, delete ---------------------------------------------------------------------------
def test_a_purchase_is_found_by_each_identifier_and_deleted_with_204(api):
    seed_trade_customer(api)
    placed = order(api, payment_method="platform_upfront", lines=NUT)
    purchase_id = sparklayer_id(placed)
    body = as_read_less_calculated(placed)
    body["purchase_identifiers"].update(platform="shop-77", internal="SO-42")
    stored = put(api, purchase_id, body).json()
    for lookup, identifier in (
        ("sparklayer", purchase_id),
        ("platform", "shop-77"),
        ("internal", "SO-42"),
        ("visible", "SL-100001"),
    ):
        assert api.call("GET", f"/api/v1/purchases/{lookup}/{identifier}").json() == stored
    problem(api.call("GET", "/api/v1/purchases/internal/SO-43"), 404)
    problem(api.call("GET", "/api/v1/purchases/number/1"), 400)
    deleted = api.call("DELETE", "/api/v1/purchases/internal/SO-42")
    assert deleted.status_code == 204 and deleted.content == b""
    problem(api.call("GET", f"/api/v1/purchases/sparklayer/{purchase_id}"), 404)
    problem(api.call("GET", f"/api/v1/purchases/sparklayer/{purchase_id}/transactions"), 404)
    problem(api.call("DELETE", "/api/v1/purchases/visible/SL-100001"), 404)
    assert listed(api) == []
    counts = api.sim("GET", "/state").json()
    assert counts["purchases"] == 0 and counts["transactions"] == 0


# -- PUT (§5) ------------------------------------------------------------------------------------
def test_the_erp_number_is_written_back_with_the_purchase_as_read(api):
    seed_trade_customer(api)
    placed = order(api, customer_reference="PO-9", lines=[{"sku": "BOLT-10", "quantity": 3}])
    body = as_read_less_calculated(placed)
    body["purchase_identifiers"]["internal"] = "SO-42"
    updated = put(api, sparklayer_id(placed), body)
    assert updated.status_code == 200, updated.text
    stored = updated.json()
    assert stored["purchase_identifiers"] == {**placed["purchase_identifiers"], "internal": "SO-42"}
    # Every save bumps updated_at and the revision; the rest is kept whole.
    assert stored["dates"]["updated_at"] > placed["dates"]["updated_at"]
    assert stored["revision_date"] == stored["dates"]["updated_at"]
    assert stored["dates"]["created_at"] == placed["dates"]["created_at"]
    assert stored["dates"]["placed_at"] == placed["dates"]["placed_at"]
    unchanged = ("type", "packages", "customer_reference", "payment_method", "calculated_total")
    assert {key: stored[key] for key in unchanged} == {key: placed[key] for key in unchanged}
    assert api.call("GET", "/api/v1/purchases/internal/SO-42").json() == stored


def test_a_put_without_the_required_fields_is_400_naming_each(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    response = put(api, sparklayer_id(placed), {"type": "order", "customer_reference": "PO-1"})
    assert properties(problem(response, 400)) == {
        "purchase_identifiers",
        "customer_identifiers",
        "dates",
        "packages",
        "accounting_files",
        "custom_fields",
    }


def test_a_put_carrying_a_calculated_field_is_400(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = {**as_read_less_calculated(placed), "calculated_total": placed["calculated_total"]}
    body["calculated_fulfilment_status"] = "processing"
    document = problem(put(api, sparklayer_id(placed), body), 400)
    assert properties(document) == {"calculated_total", "calculated_fulfilment_status"}
    assert {error["code"] for error in document["errors"]} == {"read-only"}


def test_a_put_still_in_version_1_words_is_400_naming_the_v2_field(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = {
        **as_read_less_calculated(placed),
        "id": sparklayer_id(placed),
        "status": "processing",
        "po_number": "PO-1",
    }
    document = problem(put(api, sparklayer_id(placed), body), 400)
    assert properties(document) == {"id", "status", "po_number"}
    assert "customer_reference" in document["detail"]


def test_a_put_that_would_change_the_sparklayer_id_is_403(api):
    seed_trade_customer(api)
    first, second = order(api, lines=NUT), order(api, lines=NUT)
    body = as_read_less_calculated(second)
    body["purchase_identifiers"]["visible"] = ""
    body["purchase_identifiers"]["internal"] = "SO-1"
    first_visible = first["purchase_identifiers"]["visible"]
    document = problem(put(api, first_visible, body, lookup="visible"), 403)
    assert properties(document) == {"purchase_identifiers.sparklayer"}
    assert api.call("GET", "/api/v1/purchases/internal/SO-1").status_code == 404


def test_a_put_with_a_stale_revision_date_is_409_and_changes_nothing(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    stale = as_read_less_calculated(placed)
    # The buyer changes the purchase after the pipeline read it.
    api.sim(
        "PATCH",
        f"/purchases/{sparklayer_id(placed)}",
        {"calculated_fulfilment_status": "cancelled"},
    )
    stale["purchase_identifiers"]["internal"] = "SO-1"
    document = problem(put(api, sparklayer_id(placed), stale), 409)
    assert document["errors"][0]["code"] == "revision-conflict"
    current = api.call("GET", f"/api/v1/purchases/sparklayer/{sparklayer_id(placed)}").json()
    assert current["purchase_identifiers"]["internal"] == ""
    # Read again and redo: the write-back lands and the cancellation is kept.
    fresh = as_read_less_calculated(current)
    fresh["purchase_identifiers"]["internal"] = "SO-1"
    redone = put(api, sparklayer_id(placed), fresh).json()
    assert redone["calculated_fulfilment_status"] == "cancelled"
    assert redone["purchase_identifiers"]["internal"] == "SO-1"


def test_a_put_replaces_the_purchase_and_the_server_recalculates_its_total(api):
    seed_trade_customer(api)
    placed = order(
        api,
        customer_reference="PO-1",
        lines=[{"sku": "BOLT-10", "quantity": 3}, {"sku": "NUT-10", "quantity": 1}],
    )
    body = as_read_less_calculated(placed)
    del body["customer_reference"]  # a field left out is cleared
    body["packages"][0]["line_items"] = body["packages"][0]["line_items"][1:]
    body["packages"].append({"line_items": [{"identifiers": {"sku": "EXTRA"}, "quantity": 2}]})
    body["custom_fields"] = [{"key": "delivery", "value": "am"}]
    body["portal_note"] = "kept as sent"  # a field the contract does not list
    stored = put(api, sparklayer_id(placed), body).json()
    assert stored["customer_reference"] == ""
    assert [len(p["line_items"]) for p in stored["packages"]] == [1, 1]
    assert stored["packages"][1]["shipments"] == [] and stored["packages"][1]["identifiers"] == {}
    nut_gross = placed["packages"][0]["line_items"][1]["line_total"]["total_gross"]
    assert stored["calculated_total"] == nut_gross  # EXTRA has no line_total: adds nothing
    assert stored["calculated_fulfilment_status"] == "processing"
    assert stored["custom_fields"] == body["custom_fields"]
    assert stored["portal_note"] == "kept as sent"


def test_a_put_that_matches_nothing_creates_the_purchase(api):
    customer = seed_trade_customer(api)
    body = {
        "type": "order",
        "purchase_identifiers": {"platform": "shop-1"},
        "customer_identifiers": {"sparklayer": customer["id"]},
        "payment_method": "invoice",
        "dates": {"placed_at": "2025-03-01T08:00:00Z"},
        "packages": [
            {
                "line_items": [
                    {
                        "identifiers": {"sku": "NUT-10"},
                        "quantity": 2,
                        "line_total": {
                            "total_net": {"number": "0.80", "currency": "GBP"},
                            "total_tax": {"number": "0.16", "currency": "GBP"},
                            "total_gross": {"number": "0.96", "currency": "GBP"},
                        },
                    }
                ]
            }
        ],
        "accounting_files": [],
        "custom_fields": [],
    }
    created = put(api, "shop-1", body, lookup="platform")
    assert created.status_code == 201, created.text
    stored = created.json()
    assert set(stored) == V2_KEYS
    assert stored["purchase_identifiers"]["platform"] == "shop-1"
    assert stored["purchase_identifiers"]["visible"] == "SL-100001"
    assert stored["customer_identifiers"] == {"sparklayer": customer["id"], "platform": "ACME01"}
    assert stored["calculated_total"] == {"number": "0.96", "currency": "GBP"}
    assert stored["calculated_fulfilment_status"] == "processing"
    assert stored["dates"]["placed_at"] == "2025-03-01T08:00:00.000000Z"
    assert (
        put(api, "shop-1", {**body, "payment_method": "on_account"}, "platform").status_code == 200
    )
    # A miss by the ERP number creates a second purchase: why the write-back never PUTs by it.
    by_internal = put(api, "SO-1", {**body, "purchase_identifiers": {}}, lookup="internal")
    assert by_internal.status_code == 201
    assert api.sim("GET", "/state").json()["purchases"] == 2


def test_a_put_whose_identifier_differs_from_the_url_is_id_mismatch(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = as_read_less_calculated(placed)
    body["purchase_identifiers"]["internal"] = "SO-2"
    document = problem(put(api, "SO-1", body, lookup="internal"), 400)
    assert document["errors"][0]["code"] == "idMismatch"


def test_a_put_with_invalid_values_is_400_naming_each(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = as_read_less_calculated(placed)
    body["type"] = "confirmed"
    body["payment_method"] = "pay_on_account"
    body["packages"][0]["line_items"][0]["quantity"] = 1.5
    body["packages"][0]["line_items"][0]["identifiers"] = {}
    body["packages"][0]["line_items"][0]["line_total"]["total_net"] = "0.36"
    body["dates"]["placed_at"] = "yesterday"
    document = problem(put(api, sparklayer_id(placed), body), 400)
    line = "packages[0].line_items[0]"
    assert properties(document) == {
        "type",
        "payment_method",
        f"{line}.quantity",
        f"{line}.identifiers.sku",
        f"{line}.line_total.total_net",
        "dates.placed_at",
    }


def test_a_put_for_an_unknown_customer_is_400(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = as_read_less_calculated(placed)
    body["customer_identifiers"] = {"sparklayer": "no-such-customer"}
    document = problem(put(api, sparklayer_id(placed), body), 400)
    assert properties(document) == {"customer_identifiers.sparklayer"}


def test_a_put_of_more_than_250_lines_is_400_naming_the_limit(api):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    body = as_read_less_calculated(placed)
    line = body["packages"][0]["line_items"][0]
    body["packages"] = [{"line_items": [line] * 125}, {"line_items": [line] * 126}]
    document = problem(put(api, sparklayer_id(placed), body), 400)
    assert document["errors"][0]["code"] == "limit-exceeded"


def test_an_identifier_owned_by_another_purchase_is_409(api):
    seed_trade_customer(api)
    first, second = order(api, lines=NUT), order(api, lines=NUT)
    body = as_read_less_calculated(first)
    body["purchase_identifiers"]["internal"] = "SO-42"
    assert put(api, sparklayer_id(first), body).status_code == 200
    clash = as_read_less_calculated(second)
    clash["purchase_identifiers"]["internal"] = "SO-42"
    document = problem(put(api, sparklayer_id(second), clash), 409)
    assert document["errors"][0]["code"] == "resource-already-exists"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_injected_conflicts_hit_writes_only(api, method):
    seed_trade_customer(api)
    placed = order(api, lines=NUT)
    api.sim("PUT", "/faults", {"conflict_rate": 1.0})
    path = f"/api/v1/purchases/sparklayer/{sparklayer_id(placed)}"
    assert api.call("GET", path).status_code == 200
    body = as_read_less_calculated(placed) if method == "PUT" else None
    assert problem(api.call(method, path, body), 409)["errors"][0]["code"] == "concurrent-update"
