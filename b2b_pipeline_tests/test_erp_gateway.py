"""The ERP gateway against real databases: SQLite files and the PostgreSQL server.

What a user would notice: the contract's tables exist; reads come back with the project's types;
posting a batch twice, or from two runs at once, never creates a second sales order; a batch that
fails half-way leaves nothing behind; money keeps its four decimals; an unreachable ERP is one
readable line that never shows the password.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from b2b_pipeline.connectors.erp.errors import (
    ErpConfigurationError,
    ErpError,
    ErpRejectedError,
    ErpUnreachableError,
)
from b2b_pipeline.connectors.erp.gateway import ErpGateway
from b2b_pipeline.connectors.erp.reference_edits import EDITS, ReferenceErp
from b2b_pipeline.demo import NOTABLE_ACCOUNTS, seed_erp

UTC = dt.UTC

CONTRACT_COLUMNS = {
    "erp_customers": [
        "account_code", "name", "email", "customer_group", "price_list_code",
        "discount_percentage", "payment_terms", "tax_code", "currency", "credit_limit",
        "credit_hold", "active", "updated_at",
    ],
    "erp_tax_codes": ["code", "description", "rate"],
    "erp_products": ["sku", "name", "active", "updated_at"],
    "erp_price_lists": ["code", "name", "currency", "updated_at"],
    "erp_price_list_items": ["price_list_code", "sku", "min_quantity", "unit_price", "updated_at"],
    "erp_warehouses": ["code", "name"],
    "erp_inventory": ["sku", "warehouse_code", "on_hand", "allocated", "updated_at"],
    "erp_sales_orders": [
        "order_no", "external_ref", "account_code", "po_number", "order_date", "status",
        "payment_method", "payment_terms", "tax_code", "currency", "net_total", "tax_total",
        "gross_total", "created_at",
    ],
    "erp_sales_order_lines": [
        "order_no", "line_no", "sku", "quantity", "unit_price", "line_net", "tax_amount",
    ],
}  # fmt: skip
MONEY_COLUMNS = {
    "erp_customers": ["credit_limit"],
    "erp_price_list_items": ["unit_price"],
    "erp_sales_orders": ["net_total", "tax_total", "gross_total"],
    "erp_sales_order_lines": ["unit_price", "line_net", "tax_amount"],
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def gateway(request: pytest.FixtureRequest) -> ReferenceErp:
    """The same tests on both databases the project supports."""
    return request.getfixturevalue("erp" if request.param == "sqlite" else "erp_postgres")


@pytest.fixture
def raw_engine(gateway: ReferenceErp) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine on the same database, to look under the gateway."""
    engine = sa.create_engine(gateway.display_url)  # test databases have no password
    yield engine
    engine.dispose()


def _orders(refs: list[str], *, day: int = 14, month: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "external_ref": refs,
            "account_code": "CUST0001",
            "po_number": [f"PO-{ref}" for ref in refs],
            "order_date": pd.Timestamp(2025, month, day, 10, 30, tz="UTC"),
            "status": "TO_BE_INVOICED",
            "payment_method": "pay_on_account",
            "payment_terms": "NET30",
            "tax_code": "STANDARD",
            "currency": "GBP",
            "net_total": 30.0,
            "tax_total": 6.0,
            "gross_total": 36.0,
        }
    )


def _lines(refs: list[str]) -> pd.DataFrame:
    """Two lines per order: 2 x 10.00 and 1 x 10.00."""
    return pd.DataFrame(
        {
            "external_ref": [ref for ref in refs for _ in (1, 2)],
            "line_no": [1, 2] * len(refs),
            "sku": ["WID-0001", "BRK-0001"] * len(refs),
            "quantity": [2, 1] * len(refs),
            "unit_price": 10.0,
            "line_net": [20.0, 10.0] * len(refs),
            "tax_amount": [4.0, 2.0] * len(refs),
        }
    )


def _count(gateway: ReferenceErp, table: str) -> int:
    return len(gateway.read_table(table))


# -- schema ----------------------------------------------------------------------------------


def test_schema_has_the_contract_tables_columns_and_money_precision(
    gateway: ReferenceErp, raw_engine: sa.Engine
) -> None:
    gateway.create_schema()  # a second time: safe
    inspector = sa.inspect(raw_engine)
    for table, columns in CONTRACT_COLUMNS.items():
        found = {c["name"]: c for c in inspector.get_columns(table)}
        assert set(columns) <= set(found), f"{table} lacks {set(columns) - set(found)}"
        for money in MONEY_COLUMNS.get(table, []):
            kind = found[money]["type"]
            assert (kind.precision, kind.scale) == (14, 4), f"{table}.{money} is {kind}"
    assert "parent_code" in {c["name"] for c in inspector.get_columns("erp_price_lists")}
    unique = inspector.get_unique_constraints("erp_sales_orders")
    unique_index = [i for i in inspector.get_indexes("erp_sales_orders") if i["unique"]]
    assert ["external_ref"] in [u["column_names"] for u in unique + unique_index]
    for table in ("erp_customers", "erp_products", "erp_price_list_items", "erp_inventory"):
        indexed = [i["column_names"] for i in inspector.get_indexes(table)]
        assert ["updated_at"] in indexed, f"{table}.updated_at is not indexed"


def test_reads_use_contract_names_and_project_types(gateway: ReferenceErp) -> None:
    seed_erp(gateway, customers=12, skus=24)
    customers = gateway.read_customers()
    assert list(customers.columns) == CONTRACT_COLUMNS["erp_customers"]
    assert customers["credit_limit"].dtype == "float64"
    assert customers["discount_percentage"].dtype == "float64"
    assert customers["credit_hold"].dtype == bool and customers["active"].dtype == bool
    assert str(customers["updated_at"].dtype) == "datetime64[ns, UTC]"
    held = customers.set_index("account_code").loc[NOTABLE_ACCOUNTS["credit_hold"]]
    assert bool(held["credit_hold"]) is True

    items = gateway.read_price_list_items()
    assert list(items.columns) == CONTRACT_COLUMNS["erp_price_list_items"]
    assert items["min_quantity"].dtype == "int64" and items["unit_price"].dtype == "float64"
    lists = gateway.read_price_lists()
    assert {"code", "name", "currency", "parent_code", "updated_at"} == set(lists.columns)
    assert gateway.read_tax_codes().set_index("code")["rate"].to_dict() == {
        "EXEMPT": 0.0,
        "REVERSE_CHARGE": 0.0,
        "STANDARD": 20.0,
        "ZERO": 0.0,
    }
    stock = gateway.read_inventory()
    assert stock[["on_hand", "allocated"]].dtypes.tolist() == ["int64", "int64"]
    assert set(gateway.read_warehouses()["code"]) == {"MAIN", "NORTH"}


def test_empty_tables_read_with_the_same_types(gateway: ReferenceErp) -> None:
    orders = gateway.read_sales_orders(
        dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert orders.empty
    assert orders["gross_total"].dtype == "float64"
    assert str(orders["order_date"].dtype) == "datetime64[ns, UTC]"


# -- posting sales orders --------------------------------------------------------------------


def test_posting_the_same_batch_twice_creates_each_order_once(gateway: ReferenceErp) -> None:
    refs = ["pur_1001", "pur_1002", "pur_1003"]
    first = gateway.post_sales_orders(_orders(refs), _lines(refs))
    second = gateway.post_sales_orders(_orders(refs), _lines(refs))

    assert first["external_ref"].tolist() == refs
    assert not first["already_posted"].any()
    assert first["order_no"].is_unique
    assert second["already_posted"].all()
    assert second["order_no"].tolist() == first["order_no"].tolist()
    assert _count(gateway, "sales_orders") == 3
    lines = gateway.read_sales_order_lines()
    assert len(lines) == 6  # written once, with the first posting
    assert sorted(lines["order_no"].unique()) == sorted(first["order_no"])
    one_order = gateway.read_sales_order_lines([first.loc[0, "order_no"]])
    assert one_order[["line_no", "sku", "quantity"]].values.tolist() == [
        [1, "WID-0001", 2],
        [2, "BRK-0001", 1],
    ]


def test_a_batch_mixing_new_and_posted_orders_posts_only_the_new_ones(
    gateway: ReferenceErp,
) -> None:
    posted = gateway.post_sales_orders(_orders(["pur_1"]), _lines(["pur_1"]))
    refs = ["pur_2", "pur_1", "pur_3"]
    result = gateway.post_sales_orders(_orders(refs), _lines(refs))

    assert result["external_ref"].tolist() == refs  # input order kept
    assert result["already_posted"].tolist() == [False, True, False]
    assert result.loc[1, "order_no"] == posted.loc[0, "order_no"]
    assert _count(gateway, "sales_orders") == 3
    lines_per_order = gateway.read_sales_order_lines().groupby("order_no").size()
    assert lines_per_order.tolist() == [2, 2, 2]
    existing = gateway.existing_orders(["pur_1", "pur_3", "pur_unknown"])
    assert sorted(existing["external_ref"]) == ["pur_1", "pur_3"]
    assert existing["gross_total"].tolist() == [36.0, 36.0]


def test_a_line_the_erp_refuses_leaves_no_half_posted_order(gateway: ReferenceErp) -> None:
    refs = ["pur_good", "pur_bad"]
    lines = _lines(refs)
    lines.loc[lines["external_ref"] == "pur_bad", "line_no"] = 1  # duplicate line number
    with pytest.raises(ErpRejectedError) as refused:
        gateway.post_sales_orders(_orders(refs), lines)

    assert "Nothing from it was saved" in str(refused.value)
    assert _count(gateway, "sales_orders") == 0
    assert _count(gateway, "sales_order_lines") == 0
    # The corrected batch then posts both orders, each once.
    result = gateway.post_sales_orders(_orders(refs), _lines(refs))
    assert not result["already_posted"].any()
    assert _count(gateway, "sales_orders") == 2


def test_a_large_batch_posts_in_one_call(gateway: ReferenceErp) -> None:
    refs = [f"pur_{n:05d}" for n in range(2_500)]
    result = gateway.post_sales_orders(_orders(refs), _lines(refs))
    assert len(result) == 2_500 and not result["already_posted"].any()
    assert result["order_no"].is_unique
    assert _count(gateway, "sales_order_lines") == 5_000
    again = gateway.post_sales_orders(_orders(refs), _lines(refs))
    assert again["already_posted"].all()
    assert again["order_no"].tolist() == result["order_no"].tolist()


def test_order_numbers_are_never_reused(gateway: ReferenceErp, raw_engine: sa.Engine) -> None:
    first = gateway.post_sales_orders(_orders(["pur_a"]), _lines(["pur_a"]))
    with raw_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM erp_sales_order_lines"))
        conn.execute(sa.text("DELETE FROM erp_sales_orders"))
    second = gateway.post_sales_orders(_orders(["pur_b"]), _lines(["pur_b"]))
    assert second.loc[0, "order_no"] > first.loc[0, "order_no"]


def test_two_runs_posting_the_same_orders_at_once_create_each_order_once(
    gateway: ReferenceErp,
) -> None:
    refs = [f"pur_{n}" for n in range(40)]
    other = ErpGateway(gateway.display_url)  # a second process's connection pool
    results: list[pd.DataFrame] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def post(gw: ReferenceErp) -> None:
        try:
            start.wait()
            results.append(gw.post_sales_orders(_orders(refs), _lines(refs)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(gw,)) for gw in (gateway, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    other.dispose()

    assert errors == []
    assert _count(gateway, "sales_orders") == 40
    assert _count(gateway, "sales_order_lines") == 80
    first, second = results
    assert first["order_no"].tolist() == second["order_no"].tolist()
    # Each order was created by exactly one of the two runs.
    assert (first["already_posted"] ^ second["already_posted"]).all()


def test_money_keeps_four_decimals_exactly(gateway: ReferenceErp, raw_engine: sa.Engine) -> None:
    orders = _orders(["pur_money"]).assign(
        net_total=1_234_567_890.1234, tax_total=0.1 + 0.2, gross_total=Decimal("1234567890.42345")
    )
    lines = _lines(["pur_money"]).assign(unit_price=[3.33333333, 9.99995])
    gateway.post_sales_orders(orders, lines)

    with raw_engine.connect() as conn:
        totals = conn.execute(
            sa.text(
                "SELECT CAST(net_total AS TEXT), CAST(tax_total AS TEXT), "
                "CAST(gross_total AS TEXT) FROM erp_sales_orders"
            )
        ).one()
        prices = conn.execute(
            sa.text("SELECT CAST(unit_price AS TEXT) FROM erp_sales_order_lines ORDER BY line_no")
        ).scalars()
        prices = [Decimal(p) for p in prices]
    assert [Decimal(t) for t in totals] == [
        Decimal("1234567890.1234"),
        Decimal("0.3"),
        Decimal("1234567890.4235"),  # half-up at the fifth place
    ]
    assert prices == [Decimal("3.3333"), Decimal("10.0000")]
    read_back = gateway.read_sales_order_lines()["unit_price"].tolist()
    assert read_back == [3.3333, 10.0]


def test_sales_orders_are_read_by_order_date(gateway: ReferenceErp) -> None:
    gateway.post_sales_orders(_orders(["pur_jan"], month=1, day=31), _lines(["pur_jan"]))
    gateway.post_sales_orders(_orders(["pur_feb"], month=2, day=1), _lines(["pur_feb"]))
    february = gateway.read_sales_orders(
        dt.datetime(2025, 2, 1, tzinfo=UTC), dt.datetime(2025, 3, 1, tzinfo=UTC)
    )
    assert february["external_ref"].tolist() == ["pur_feb"]
    assert february.loc[0, "order_date"] == pd.Timestamp("2025-02-01 10:30", tz="UTC")
    assert february.loc[0, "created_at"].tzinfo is not None


def test_a_batch_naming_an_order_twice_is_refused_before_writing(erp: ReferenceErp) -> None:
    with pytest.raises(ValueError, match="pur_x"):
        erp.post_sales_orders(_orders(["pur_x", "pur_x"]), _lines(["pur_x"]))
    assert _count(erp, "sales_orders") == 0


# -- change detection and master-data writes -------------------------------------------------


def test_changed_since_sees_a_credit_hold_and_a_deleted_price(gateway: ReferenceErp) -> None:
    seed_erp(gateway, customers=12, skus=24)
    cursor = gateway.changed_since("customers", None)
    assert cursor == gateway.read_customers()["updated_at"].max()
    assert gateway.changed_since("customers", cursor) is None

    gateway.set_credit_hold(NOTABLE_ACCOUNTS["trade"], True)
    newer = gateway.changed_since("erp_customers", cursor)
    assert newer is not None and newer > cursor
    held = gateway.read_customers().set_index("account_code")["credit_hold"]
    assert held[NOTABLE_ACCOUNTS["trade"]]

    lists_cursor = gateway.changed_since("price_lists", None)
    assert gateway.delete_price("PL-TRADE-GBP", "WID-0001") == 4
    assert gateway.changed_since("price_lists", lists_cursor) is not None
    gateway.set_price("PL-TRADE-GBP", "WID-0001", 1, 12.5)
    items = gateway.read_price_list_items()
    mine = items[(items["price_list_code"] == "PL-TRADE-GBP") & (items["sku"] == "WID-0001")]
    assert mine[["min_quantity", "unit_price"]].values.tolist() == [[1, 12.5]]


def test_create_customer_fills_defaults_and_keeps_an_existing_account(erp: ReferenceErp) -> None:
    record = {"account_code": "NEW001", "name": "Brightwell Interiors Ltd", "tax_code": "STANDARD",
              "currency": "GBP", "customer_group": "trade", "price_list_code": "PL-TRADE-GBP",
              "payment_terms": "NET30", "credit_limit": 0}  # fmt: skip
    erp.create_customer(record)
    erp.create_customer({**record, "name": "Changed Name"})  # a rerun: no error, no change
    customers = erp.read_customers()
    assert customers["account_code"].tolist() == ["NEW001"]
    row = customers.iloc[0]
    assert row["name"] == "Brightwell Interiors Ltd"
    assert (bool(row["active"]), bool(row["credit_hold"]), row["discount_percentage"]) == (
        True,
        False,
        0.0,
    )


# -- errors ----------------------------------------------------------------------------------


def test_unreachable_postgres_is_one_line_that_hides_the_password() -> None:
    gateway = ErpGateway("postgresql://erp_user:TopSecret-42@127.0.0.1:1/erp")
    assert "TopSecret-42" not in repr(gateway)
    assert gateway.display_url.startswith("postgresql+psycopg://erp_user:***@127.0.0.1:1/erp")
    with pytest.raises(ErpUnreachableError) as failure:
        gateway.read_customers()
    message = str(failure.value)
    assert "TopSecret-42" not in message
    assert "postgresql+psycopg://erp_user:***@127.0.0.1:1/erp" in message
    assert "\n" not in message
    gateway.dispose()


def test_unopenable_sqlite_file_is_reported_as_unreachable(tmp_path: Path) -> None:
    gateway = ErpGateway(f"sqlite:///{tmp_path / 'missing-folder' / 'erp.sqlite'}")
    with pytest.raises(ErpUnreachableError, match="could not be reached"):
        gateway.ping()
    gateway.dispose()


def test_missing_tables_point_to_erp_init(tmp_path: Path) -> None:
    gateway = ErpGateway(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(ErpError, match="erp init"):
        gateway.read_products()
    gateway.dispose()


def test_an_invalid_url_is_a_configuration_error_without_echo() -> None:
    with pytest.raises(ErpConfigurationError) as failure:
        ErpGateway("not a url with password hunter2")
    assert "hunter2" not in str(failure.value)


def test_prices_for_skus_missing_from_the_catalogue_are_found(gateway: ReferenceErp) -> None:
    seed_erp(gateway, customers=12, skus=24)
    assert gateway.priced_skus_not_in_catalogue() == []
    gateway.set_price("PL-TRADE-GBP", "GHOST-0001", 1, "9.99")
    gateway.set_price("PL-TRADE-GBP", "GHOST-0001", 10, "8.99")
    assert gateway.priced_skus_not_in_catalogue() == ["GHOST-0001"]


def test_reads_by_key_return_exactly_the_rows_of_a_full_read(gateway: ReferenceErp) -> None:
    """What a small order batch reads (its SKUs, its accounts' lists) is the full read cut
    down, on both databases: same rows, same types, nothing missed at a chunk edge."""
    from b2b_pipeline.connectors.erp import gateway as module

    seed_erp(gateway, customers=12, skus=24)
    items = gateway.read_price_list_items()
    skus = sorted(items["sku"].unique())[:5]
    lists = sorted(items["price_list_code"].unique())[:3]

    def rows(frame):
        return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)

    by_key = gateway.read_price_list_items(price_list_codes=lists, skus=skus)
    expected = items[items["sku"].isin(skus) & items["price_list_code"].isin(lists)]
    assert len(by_key) > 0
    pd.testing.assert_frame_equal(rows(by_key), rows(expected))
    assert gateway.read_price_list_items(skus=[]).empty  # an empty batch reads nothing
    products = gateway.read_products(skus=[*skus, "NO-SUCH-SKU"])
    assert sorted(products["sku"]) == skus
    pd.testing.assert_series_equal(
        products.dtypes, gateway.read_products().dtypes, check_names=False
    )
    # Keys beyond one IN list are read in chunks, and every chunk's rows come back.
    original = module._IN_CHUNK
    module._IN_CHUNK = 2
    try:
        chunked = gateway.read_price_list_items(price_list_codes=lists, skus=skus)
    finally:
        module._IN_CHUNK = original
    pd.testing.assert_frame_equal(rows(chunked), rows(expected))


def test_the_product_never_edits_the_erps_master_data() -> None:
    """The pipeline reads the ERP's customers, prices and stock and writes only sales orders
    (and customers under the ``auto_create`` policy): the edits a person makes in the ERP
    (credit hold, prices, stock) live on ReferenceErp, for tests and the demo, and no module
    of the product calls one."""
    import re
    from pathlib import Path

    import b2b_pipeline

    root = Path(b2b_pipeline.__file__).parent
    pattern = re.compile(r"\.(" + "|".join(EDITS) + r")\(")
    calls = [
        f"{path.relative_to(root)}: {match.group(1)}"
        for path in root.rglob("*.py")
        if path.name != "reference_edits.py"
        for match in pattern.finditer(path.read_text())
    ]
    assert calls == []
    assert not any(hasattr(ErpGateway, name) for name in EDITS)
