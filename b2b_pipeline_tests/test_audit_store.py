"""The audit store against a real DuckDB file: the hash chain catches tampering, the exception
queue files each problem once and records every decision, the finance views agree with their
tables, price history answers "what price did this account see on that day", and two writer
processes share the file without losing an event."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from b2b_pipeline.connectors.audit.hashing import GENESIS_HASH, HASH_SQL
from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.domain.exceptions import exception_frame

CONTRACT_VIEW_COLUMNS = {
    "v_order_postings": [
        "portal_order_id",
        "erp_order_no",
        "account_code",
        "posted_at",
        "currency",
        "portal_gross",
        "erp_gross",
        "payment_method",
        "erp_status",
    ],
    "v_open_exceptions": [
        "exception_id",
        "category",
        "reason_code",
        "entity_key",
        "account_code",
        "opened_at",
        "age_hours",
        "message",
    ],
    "v_month_end_reconciliation": [
        "month",
        "account_code",
        "currency",
        "portal_orders",
        "erp_orders",
        "portal_gross",
        "erp_gross",
        "variance",
        "missing_in_erp",
        "missing_in_portal",
        "amount_mismatches",
        "open_exceptions",
    ],
}


def order_events(count: int, *, run_id: str = "run-1", first: int = 0) -> pd.DataFrame:
    keys = [f"P{n:05d}" for n in range(first, first + count)]
    return pd.DataFrame(
        {
            "run_id": run_id,
            "entity": "order",
            "entity_key": keys,
            "action": "posted",
            "category": None,
            "detail": [json.dumps({"gross": f"{n}.50", "note": "a|b"}) for n in range(count)],
        }
    )


def tamper(store: AuditStore, *statements: str) -> None:
    """Change the file behind the store's back, as someone with the DuckDB CLI could."""
    with duckdb.connect(str(store.path)) as connection:
        for statement in statements:
            connection.execute(statement)


# -- hash chain -------------------------------------------------------------------------------


def test_events_from_several_batches_form_one_gapless_chain_that_verifies(
    audit: AuditStore,
) -> None:
    assert audit.append_events(order_events(5)) == 5
    assert audit.append_events(order_events(3, first=5, run_id="run-2")) == 3

    trail = audit.events()
    assert trail["seq"].tolist() == list(range(1, 9))
    assert trail["entity_key"].tolist() == [f"P{n:05d}" for n in range(8)]
    assert trail["prev_hash"].iloc[0] == GENESIS_HASH
    assert trail["prev_hash"].iloc[1:].tolist() == trail["hash"].iloc[:-1].tolist()
    assert trail["event_id"].is_unique
    assert str(trail["occurred_at"].dt.tz) == "UTC"
    result = audit.verify()
    assert (result.ok, result.complete, result.checked, result.problems) == (True, True, 8, [])


def test_a_large_batch_inserted_in_slices_chains_across_the_slice_boundaries(
    audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_pipeline.connectors.audit import events

    monkeypatch.setattr(events, "_INSERT_SLICE_ROWS", 3)
    monkeypatch.setattr(events, "_FIRST_STAGE_ROWS", 4)  # staged apart from the rest

    audit.append_events(order_events(10))

    trail = audit.events()
    assert trail["seq"].tolist() == list(range(1, 11))
    assert trail["entity_key"].tolist() == [f"P{n:05d}" for n in range(10)]
    assert trail["prev_hash"].iloc[1:].tolist() == trail["hash"].iloc[:-1].tolist()
    assert audit.verify().ok


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            ['UPDATE audit_events SET detail = \'{"gross": "0.00"}\' WHERE seq = 4'],
            "row seq 4 was changed after it was written",
            id="edited-detail",
        ),
        pytest.param(
            ["DELETE FROM audit_events WHERE seq = 4"],
            "row seq 4 is missing: deleted from the trail",
            id="deleted-middle-row",
        ),
        pytest.param(
            ["DELETE FROM audit_events WHERE seq = 8"],
            "row seq 8 is missing at the end of the trail",
            id="deleted-last-row",
        ),
        pytest.param(
            ["DELETE FROM audit_events WHERE seq >= 6"],
            "rows seq 6 to 8 are missing at the end of the trail",
            id="deleted-last-rows",
        ),
        pytest.param(
            [
                "INSERT INTO audit_events SELECT * REPLACE ('{}' AS detail) "
                "FROM audit_events WHERE seq = 4"
            ],
            "seq 4 appears more than once",
            id="inserted-forged-row",
        ),
        pytest.param(
            [
                "UPDATE audit_events SET seq = -1 WHERE seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE seq = -1",
            ],
            "row seq 3 was changed after it was written",
            id="swapped-rows",
        ),
    ],
)
def test_tampering_with_the_trail_is_detected_and_names_the_row(
    audit: AuditStore, statements: list[str], expected: str
) -> None:
    audit.append_events(order_events(8))
    tamper(audit, *statements)

    result = audit.verify()

    assert not result.ok
    assert any(expected in problem for problem in result.problems), result.problems


def test_swapped_rows_are_reported_at_both_positions(audit: AuditStore) -> None:
    audit.append_events(order_events(8))
    tamper(
        audit,
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    )

    problems = audit.verify().problems

    assert any("row seq 3 " in p for p in problems)
    assert any("row seq 4 " in p for p in problems)


def test_text_moved_from_one_field_into_the_next_is_detected(audit: AuditStore) -> None:
    # Joined with a plain separator, ("P1|rush", "posted") and ("P1", "rush|posted") read the
    # same; the length prefixes of the canonical content tell them apart.
    audit.append_events(order_events(2).assign(entity_key=["P1|rush", "P2"]))
    tamper(audit, "UPDATE audit_events SET entity_key = 'P1', action = 'rush|posted' WHERE seq = 1")

    assert audit.verify().problems == [
        "audit_events: row seq 1 was changed after it was written: its content no longer "
        "matches its hash"
    ]


def test_a_row_forged_with_a_correct_hash_after_the_end_is_detected(audit: AuditStore) -> None:
    audit.append_events(order_events(3))
    # Someone who read hashing.py chains a convincing row onto the end, but cannot make the
    # store's recorded chain tip agree without also rewriting it.
    tamper(
        audit,
        "INSERT INTO audit_events SELECT 4, uuid()::VARCHAR, now(), 'run-x', 'order', 'P99999', "
        "'posted', NULL, '{}', hash, '' FROM audit_events WHERE seq = 3",
        f"UPDATE audit_events SET hash = {HASH_SQL} WHERE seq = 4",
    )

    result = audit.verify()

    assert result.checked == 4
    assert result.problems == [
        "audit_events: row seq 4 is beyond the last row the store wrote (seq 3): added to the "
        "trail from outside the pipeline",
        "audit_events: row seq 4 is after the last keyed checkpoint (1, events up to seq 3): no "
        "write of the pipeline leaves events unsealed, so they were added from outside",
    ]


def test_deleting_the_last_rows_stays_detected_after_more_events_are_appended(
    audit: AuditStore,
) -> None:
    audit.append_events(order_events(5))
    tamper(audit, "DELETE FROM audit_events WHERE seq = 5")

    audit.append_events(order_events(2, first=5))

    problems = audit.verify().problems
    assert any("row seq 5 is missing: deleted from the trail" in p for p in problems)
    assert audit.events()["seq"].tolist() == [1, 2, 3, 4, 6, 7]


def test_an_event_without_a_key_is_refused_and_nothing_of_its_batch_is_written(
    audit: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_pipeline.connectors.audit import events

    monkeypatch.setattr(events, "_FIRST_STAGE_ROWS", 2)  # the blank row is in the second part
    audit.append_events(order_events(2))
    batch = order_events(5, first=2)
    batch.loc[3, "entity_key"] = float("nan")

    with pytest.raises(ValueError, match=r"audit events have empty \['entity_key'\]"):
        audit.append_events(batch)

    assert audit.events()["seq"].tolist() == [1, 2]
    assert audit.verify().ok


def test_details_given_as_dicts_or_plain_text_are_kept_as_json(audit: AuditStore) -> None:
    events = order_events(2).assign(detail=[{"gross": 12.5}, "portal said: bad request"])

    audit.append_events(events)

    details = audit.query(
        "SELECT detail->>'$.gross' AS gross, detail->>'$' AS text FROM audit_events ORDER BY seq"
    )
    assert details["gross"].tolist() == ["12.5", None]
    assert details["text"].iloc[1] == "portal said: bad request"
    assert audit.verify().ok


# -- exception queue --------------------------------------------------------------------------


def price_mismatch(order_id: str, message: str = "Portal total 120.00 GBP, ERP 118.00 GBP"):
    return {
        "entity": "order",
        "entity_key": order_id,
        "account_code": "ACME01",
        "reason_code": "PRICE_MISMATCH",
        "message": message,
        "payload": json.dumps({"id": order_id}),
    }


def exception_actions(audit: AuditStore, exception_id: str) -> list[str]:
    return audit.events(entity="exception", entity_key=exception_id)["action"].tolist()


def test_the_same_problem_seen_again_updates_the_open_exception_instead_of_filing_another(
    audit: AuditStore,
) -> None:
    first = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")
    again = audit.open_exceptions(
        exception_frame(
            [
                price_mismatch("P1", "Portal total 121.00 GBP, ERP 118.00 GBP"),
                {**price_mismatch("P1"), "reason_code": "ACCOUNT_ON_HOLD"},
            ]
        ),
        run_id="run-2",
    )

    exception_id = first["exception_id"].iloc[0]
    assert first["is_new"].tolist() == [True]
    assert again["exception_id"].iloc[0] == exception_id
    assert again["is_new"].tolist() == [False, True]
    queue = audit.exceptions(status="open").set_index("reason_code")
    assert queue.loc["PRICE_MISMATCH", "attempts"] == 2
    assert queue.loc["PRICE_MISMATCH", "message"] == "Portal total 121.00 GBP, ERP 118.00 GBP"
    assert queue.loc["ACCOUNT_ON_HOLD", "category"] == "AUTHORISATION"
    assert exception_actions(audit, exception_id) == ["exception_opened", "exception_recurred"]
    assert audit.verify().ok


def test_approving_records_who_decided_what_and_keeps_the_exception_unresolved(
    audit: AuditStore,
) -> None:
    filed = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")
    exception_id = filed["exception_id"].iloc[0]

    audit.set_exception_status(
        exception_id, "approved", by="finance@acme", decision={"accept": "erp_price"}
    )
    again = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-2")

    stored = audit.exception(exception_id)
    assert stored["status"] == "approved"
    assert stored["resolved_by"] == "finance@acme"
    assert json.loads(stored["decision"]) == {"accept": "erp_price"}
    assert again["exception_id"].iloc[0] == exception_id
    approval = audit.events(action="exception_approved")
    assert json.loads(approval["detail"].iloc[0])["decision"] == {"accept": "erp_price"}
    assert approval["entity_key"].tolist() == [exception_id]


def test_a_later_success_resolves_the_exception_and_a_new_failure_files_a_new_one(
    audit: AuditStore,
) -> None:
    filed = audit.open_exceptions(
        exception_frame([price_mismatch("P1"), price_mismatch("P2")]), run_id="run-1"
    )
    audit.set_exception_status(filed["exception_id"].iloc[0], "approved", by="finance@acme")

    resolved = audit.resolve_exceptions_for("order", ["P1", "P3"], run_id="run-2")
    later = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-3")

    first_id = filed["exception_id"].iloc[0]
    assert resolved == 1
    assert audit.exception(first_id)["status"] == "resolved"
    assert audit.exception(first_id)["resolved_by"] == "pipeline"
    assert audit.exception(filed["exception_id"].iloc[1])["status"] == "open"
    assert later["is_new"].tolist() == [True]
    assert later["exception_id"].iloc[0] != first_id
    assert exception_actions(audit, first_id) == [
        "exception_opened",
        "exception_approved",
        "exception_resolved",
    ]


def test_ignoring_closes_the_exception_and_is_recorded(audit: AuditStore) -> None:
    filed = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")
    exception_id = filed["exception_id"].iloc[0]

    audit.set_exception_status(exception_id, "ignored", by="ops@acme", note="customer told")

    stored = audit.exception(exception_id)
    assert (stored["status"], stored["resolution_note"]) == ("ignored", "customer told")
    assert stored["resolved_at"].tzinfo is not None
    assert audit.query("SELECT * FROM v_open_exceptions").empty
    assert exception_actions(audit, exception_id) == ["exception_opened", "exception_ignored"]


def test_deciding_on_an_unknown_exception_or_with_an_unknown_status_is_refused(
    audit: AuditStore,
) -> None:
    filed = audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")

    with pytest.raises(KeyError, match="EX-999999"):
        audit.set_exception_status("EX-999999", "approved", by="finance@acme")
    with pytest.raises(ValueError, match="status must be one of"):
        audit.set_exception_status(filed["exception_id"].iloc[0], "done", by="finance@acme")
    assert audit.exception("EX-999999") is None
    assert exception_actions(audit, filed["exception_id"].iloc[0]) == ["exception_opened"]


# -- finance views ----------------------------------------------------------------------------


def reconciliation_lines() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("P1", "1001", "ACME01", "GBP", 120.00, 120.00, "MATCHED"),
            ("P2", "1002", "ACME01", "GBP", 60.00, 58.50, "AMOUNT_MISMATCH"),
            ("P3", None, "ACME01", "GBP", 30.00, None, "MISSING_IN_ERP"),
            ("P4", None, "ACME01", "GBP", 45.25, None, "EXCEPTION_OPEN"),
            (None, "1005", "ACME01", "GBP", None, 15.00, "MISSING_IN_PORTAL"),
            ("P6", "1006", "BOLT02", "EUR", 10.10, 10.10, "MATCHED"),
        ],
        columns=[
            "portal_order_id",
            "erp_order_no",
            "account_code",
            "currency",
            "portal_gross",
            "erp_gross",
            "outcome",
        ],
    ).assign(difference=lambda f: f["erp_gross"].fillna(0) - f["portal_gross"].fillna(0))


@pytest.mark.parametrize("view", sorted(CONTRACT_VIEW_COLUMNS))
def test_finance_views_have_exactly_the_contract_columns(audit: AuditStore, view: str) -> None:
    assert audit.query(f"SELECT * FROM {view}").columns.tolist() == CONTRACT_VIEW_COLUMNS[view]


def test_month_end_view_adds_up_the_reconciliation_lines(audit: AuditStore) -> None:
    lines = reconciliation_lines()
    audit.write_reconciliation_lines("2025-03", lines, run_id="run-1")

    view = audit.month_end_reconciliation("2025-03").set_index("account_code")

    in_portal = lines[lines["outcome"] != "MISSING_IN_PORTAL"]
    for account, account_lines in lines.groupby("account_code"):
        row = view.loc[account]
        portal = in_portal[in_portal["account_code"] == account]
        assert row["portal_orders"] == portal["portal_order_id"].count()
        assert row["erp_orders"] == account_lines["erp_order_no"].count()
        assert row["portal_gross"] == pytest.approx(portal["portal_gross"].sum())
        assert row["erp_gross"] == pytest.approx(account_lines["erp_gross"].sum())
        assert row["variance"] == pytest.approx(
            account_lines["erp_gross"].sum() - portal["portal_gross"].sum()
        )
        outcomes = account_lines["outcome"].value_counts()
        assert row["missing_in_erp"] == outcomes.get("MISSING_IN_ERP", 0)
        assert row["missing_in_portal"] == outcomes.get("MISSING_IN_PORTAL", 0)
        assert row["amount_mismatches"] == outcomes.get("AMOUNT_MISMATCH", 0)
        assert row["open_exceptions"] == outcomes.get("EXCEPTION_OPEN", 0)
    assert view.loc["ACME01", "variance"] == pytest.approx(-61.75)


def test_rerunning_a_month_replaces_its_lines_and_records_each_run(audit: AuditStore) -> None:
    lines = reconciliation_lines()
    audit.write_reconciliation_lines("2025-03", lines, run_id="run-1")
    audit.write_reconciliation_lines("2025-04", lines.head(1), run_id="run-1")
    audit.write_reconciliation_lines("2025-03", lines.head(2), run_id="run-2")

    assert len(audit.reconciliation_lines("2025-03")) == 2
    assert len(audit.reconciliation_lines("2025-04")) == 1
    runs = audit.events(entity="reconciliation", entity_key="2025-03")
    details = [json.loads(d) for d in runs["detail"]]
    assert details[0]["outcomes"]["MISSING_IN_ERP"] == 1
    assert details[1] == {
        "lines": 2,
        "replaced_lines": len(lines),
        "outcomes": {"AMOUNT_MISMATCH": 1, "MATCHED": 1},
    }


def test_order_postings_are_recorded_once_per_order_and_keep_the_first_posting_time(
    audit: AuditStore,
) -> None:
    first_posting = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
    postings = pd.DataFrame(
        {
            "portal_order_id": ["P1", "P2"],
            "erp_order_no": ["1001", "1002"],
            "account_code": ["ACME01", "ACME01"],
            "posted_at": [first_posting, first_posting],
            "currency": ["GBP", "GBP"],
            "portal_gross": [120.0, 60.0],
            "erp_gross": [120.0, 60.0],
            "payment_method": ["pay_on_account", "card"],
            "erp_status": ["TO_BE_INVOICED", "PAID"],
        }
    )
    audit.record_order_postings(postings, run_id="run-1")
    audit.record_order_postings(
        postings.head(1).assign(posted_at=first_posting + timedelta(days=1), erp_status="INVOICED"),
        run_id="run-2",
    )

    view = audit.query("SELECT * FROM v_order_postings ORDER BY portal_order_id")
    assert view["portal_order_id"].tolist() == ["P1", "P2"]
    assert view["erp_status"].tolist() == ["INVOICED", "PAID"]
    assert view["posted_at"].tolist() == [first_posting, first_posting]
    assert view["erp_gross"].tolist() == [120.0, 60.0]


def test_open_exceptions_view_lists_unresolved_exceptions_with_their_age(
    audit: AuditStore,
) -> None:
    filed = audit.open_exceptions(
        exception_frame([price_mismatch("P1"), price_mismatch("P2")]), run_id="run-1"
    )
    audit.set_exception_status(filed["exception_id"].iloc[1], "resolved", by="finance@acme")

    view = audit.query("SELECT * FROM v_open_exceptions")

    assert view["exception_id"].tolist() == [filed["exception_id"].iloc[0]]
    assert view["entity_key"].tolist() == ["P1"]
    assert view["category"].tolist() == ["PRICING"]
    assert 0 <= view["age_hours"].iloc[0] < 0.1


# -- price history ----------------------------------------------------------------------------

MONDAY = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
TUESDAY_NOON = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def push(audit: AuditStore, at: datetime, rows: list[tuple]) -> None:
    audit.record_prices(
        pd.DataFrame(rows, columns=["slug", "sku", "min_quantity", "price", "currency"]).assign(
            pushed_at=at
        ),
        run_id=f"run-{at:%d}",
    )


@pytest.fixture
def priced(audit: AuditStore) -> AuditStore:
    """ACME01 on the trade list at 10% off; the trade price of WIDGET changes on Tuesday noon,
    its 10+ break is dropped, and ACME01 gets its own list on Wednesday."""
    audit.record_customer_lists(
        pd.DataFrame(
            {
                "account_code": ["ACME01"],
                "price_lists": [["trade-gbp"]],
                "discount_percentage": [10.0],
                "pushed_at": [MONDAY],
            }
        )
    )
    push(
        audit,
        MONDAY,
        [
            ("trade-gbp", "WIDGET", 1, 10.00, "GBP"),
            ("trade-gbp", "WIDGET", 10, 9.00, "GBP"),
            ("trade-gbp", "GADGET", 1, 4.00, "GBP"),
        ],
    )
    push(audit, TUESDAY_NOON, [("trade-gbp", "WIDGET", 1, 9.50, "GBP")])
    wednesday = MONDAY + timedelta(days=2)
    push(audit, wednesday, [("acme01-gbp", "WIDGET", 1, 8.00, "GBP")])
    audit.record_customer_lists(
        pd.DataFrame(
            {
                "account_code": ["ACME01"],
                "price_lists": [json.dumps(["acme01-gbp", "trade-gbp"])],
                "discount_percentage": [10.0],
                "pushed_at": [wednesday],
            }
        )
    )
    return audit


def breaks(frame: pd.DataFrame) -> list[tuple]:
    return list(
        frame[["price_list_slug", "min_quantity", "list_price", "price"]].itertuples(
            index=False, name=None
        )
    )


def test_price_on_a_date_gives_the_breaks_the_account_saw_with_its_discount(
    priced: AuditStore,
) -> None:
    monday = priced.price_on("ACME01", "WIDGET", date(2025, 3, 3))

    assert breaks(monday) == [("trade-gbp", 1, 10.0, 9.0), ("trade-gbp", 10, 9.0, 8.1)]
    assert monday["valid_to"].tolist() == [TUESDAY_NOON, TUESDAY_NOON]
    assert priced.price_on("ACME01", "WIDGET", date(2025, 3, 2)).empty


def test_price_on_the_day_of_a_change_shows_both_prices_with_the_hour_it_changed(
    priced: AuditStore,
) -> None:
    tuesday = priced.price_on("ACME01", "WIDGET", date(2025, 3, 4))
    after_noon = priced.price_on("ACME01", "WIDGET", TUESDAY_NOON + timedelta(hours=1))

    assert breaks(tuesday) == [
        ("trade-gbp", 1, 10.0, 9.0),
        ("trade-gbp", 10, 9.0, 8.1),
        ("trade-gbp", 1, 9.5, 8.55),
    ]
    assert tuesday["valid_from"].iloc[2] == TUESDAY_NOON
    assert breaks(after_noon) == [("trade-gbp", 1, 9.5, 8.55)]


def test_price_on_names_the_customer_specific_list_once_the_account_has_one(
    priced: AuditStore,
) -> None:
    thursday = priced.price_on("ACME01", "WIDGET", date(2025, 3, 6))

    assert sorted(breaks(thursday)) == [
        ("acme01-gbp", 1, 8.0, 7.2),
        ("trade-gbp", 1, 9.5, 8.55),
    ]
    assert thursday["valid_to"].isna().all()


def test_a_sku_pushed_without_a_price_is_closed_and_an_unchanged_push_keeps_one_row(
    priced: AuditStore,
) -> None:
    friday = MONDAY + timedelta(days=4)
    push(priced, friday, [("trade-gbp", "WIDGET", None, None, "GBP")])
    push(priced, friday, [("trade-gbp", "GADGET", 1, 4.00, "GBP")])

    trade = priced.query(
        "SELECT sku, price, valid_to FROM price_history WHERE price_list_slug = 'trade-gbp' "
        "ORDER BY sku, valid_from, min_quantity"
    )
    assert trade[trade["sku"] == "GADGET"]["valid_to"].isna().tolist() == [True]
    widget = trade[trade["sku"] == "WIDGET"]
    assert widget["valid_to"].notna().all()
    assert widget["valid_to"].max() == friday
    assert breaks(priced.price_on("ACME01", "WIDGET", friday + timedelta(hours=1))) == [
        ("acme01-gbp", 1, 8.0, 7.2)
    ]


# -- concurrency and export -------------------------------------------------------------------


WRITER_BATCHES = 20
EVENTS_PER_BATCH = 25


def append_batches(path: str, writer: str, start_together: Any, lock_waits: Any) -> None:
    """One writer process: many small appends, as a run does over its lifetime; reports how
    often it found the file locked by the other writer and waited."""
    waits: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = waits.append  # type: ignore[method-assign]
    waiting_logger = logging.getLogger("b2b_pipeline.connectors.audit.connection")
    waiting_logger.setLevel(logging.INFO)
    waiting_logger.addHandler(handler)
    store = AuditStore(Path(path))
    start_together.wait(timeout=60)
    for batch in range(WRITER_BATCHES):
        events = order_events(EVENTS_PER_BATCH, run_id=writer, first=batch * EVENTS_PER_BATCH)
        store.append_events(events.assign(entity_key=writer + "-" + events["entity_key"]))
    lock_waits.put(len(waits))


def test_two_writer_processes_share_the_file_without_losing_an_event(audit: AuditStore) -> None:
    context = multiprocessing.get_context("spawn")
    start_together, lock_waits = context.Barrier(2), context.Queue()
    writers = [
        context.Process(
            target=append_batches, args=(str(audit.path), name, start_together, lock_waits)
        )
        for name in ("writer-a", "writer-b")
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)

    assert [process.exitcode for process in writers] == [0, 0]
    # The writers really collided on the file lock, and waited instead of failing.
    assert lock_waits.get(timeout=5) + lock_waits.get(timeout=5) > 0
    trail = audit.events()
    per_writer = WRITER_BATCHES * EVENTS_PER_BATCH
    assert trail["seq"].tolist() == list(range(1, 2 * per_writer + 1))
    assert trail.groupby("run_id")["entity_key"].nunique().to_dict() == {
        "writer-a": per_writer,
        "writer-b": per_writer,
    }
    assert audit.verify().ok


def test_threads_of_one_process_writing_and_verifying_keep_the_chain_whole(
    audit: AuditStore,
) -> None:
    errors: list[BaseException] = []

    def write_and_verify(writer: str) -> None:
        try:
            store = AuditStore(audit.path)
            for batch in range(8):
                store.append_events(order_events(5, run_id=writer, first=batch * 5))
                store.verify()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write_and_verify, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert audit.events()["seq"].tolist() == list(range(1, 3 * 8 * 5 + 1))
    assert audit.verify().ok


def test_export_writes_every_table_as_parquet(audit: AuditStore, tmp_path: Path) -> None:
    audit.append_events(order_events(4))
    audit.open_exceptions(exception_frame([price_mismatch("P1")]), run_id="run-1")

    written = audit.export_parquet(tmp_path / "warehouse")

    assert {path.name for path in written} >= {"audit_events.parquet", "exceptions.parquet"}
    events = pd.read_parquet(tmp_path / "warehouse" / "audit_events.parquet")
    exceptions = pd.read_parquet(tmp_path / "warehouse" / "exceptions.parquet")
    assert events["hash"].tolist() == audit.events()["hash"].tolist()
    assert exceptions["entity_key"].tolist() == ["P1"]


def test_after_each_operation_another_process_may_open_the_file_for_writing(
    audit: AuditStore,
) -> None:
    # The store attaches the file to this process's DuckDB instance for one operation only;
    # the instance stays alive, the file's lock must not.
    audit.append_events(order_events(3))
    assert len(audit.events()) == 3
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
            "c.execute('CREATE TABLE other_process_was_here AS SELECT 1 AS x'); c.close()",
            str(audit.path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    audit.append_events(order_events(2, first=3))
    assert audit.verify().ok


def test_a_file_this_process_already_holds_open_is_shared_not_refused(
    audit: AuditStore,
) -> None:
    # A finance user's own DuckDB session in the same interpreter (a notebook) has the file
    # open: DuckDB cannot attach it a second time, so the store uses that session's database.
    audit.append_events(order_events(2))
    session = duckdb.connect(str(audit.path))
    try:
        audit.append_events(order_events(3, first=2))
        assert audit.events()["entity_key"].tolist() == [f"P{n:05d}" for n in range(5)]
        assert session.execute("SELECT count(*) FROM audit_events").fetchall() == [(5,)]
    finally:
        session.close()
    assert audit.verify().ok
