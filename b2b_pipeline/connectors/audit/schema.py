"""Tables and views of the audit store (contracts/audit-and-finance.md fixes their names).

Contract columns come first in each table, in the contract's order; the columns this store adds
(run ids, retry bookkeeping, decisions) follow. Money is DECIMAL so that finance sums are exact;
every timestamp is TIMESTAMPTZ and sessions run in UTC.
"""

from __future__ import annotations

from b2b_pipeline.domain.reconciliation import MONTH_END_SUMMARY_SQL

TABLES_SQL = """
-- The hashes are stored uncompressed: hex digests do not compress, and DuckDB's search for a
-- compression that works tripled the cost of a bulk append (benchmarks/bench_audit.py).
CREATE TABLE IF NOT EXISTS audit_events (
    seq          BIGINT      NOT NULL,  -- gapless, increasing; no index: the hash chain guards it
    event_id     VARCHAR     NOT NULL,  -- uuid4
    occurred_at  TIMESTAMPTZ NOT NULL,
    run_id       VARCHAR,               -- Dagster run id
    entity       VARCHAR     NOT NULL,
    entity_key   VARCHAR     NOT NULL,
    action       VARCHAR     NOT NULL,
    category     VARCHAR,
    detail       JSON        NOT NULL,
    prev_hash    VARCHAR     USING COMPRESSION uncompressed NOT NULL,
    hash         VARCHAR     USING COMPRESSION uncompressed NOT NULL
);

-- The last seq and hash written, updated in the same transaction as each append, so that
-- deleting the newest rows (which leaves a shorter but self-consistent chain) is detected.
CREATE TABLE IF NOT EXISTS audit_chain_tip (
    last_seq    BIGINT      NOT NULL,
    last_hash   VARCHAR     NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Which trail this file holds: the anchors kept outside the file are filed under this id, so a
-- copy of the file (a backup, a test's tampered copy) is checked against the same anchors.
CREATE TABLE IF NOT EXISTS audit_trail (
    trail_id    VARCHAR     NOT NULL,   -- uuid4, written by the first sealed write
    created_at  TIMESTAMPTZ NOT NULL
);

-- One keyed seal per write transaction (checkpoints.py): the events chain's head, the record
-- ledger's range and digest, and an HMAC over them and the previous seal.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    checkpoint      BIGINT      NOT NULL,  -- gapless from 1
    events_seq      BIGINT      NOT NULL,  -- audit_events.seq of the head sealed (0: none yet)
    events_hash     VARCHAR     NOT NULL,  -- audit_events.hash at events_seq
    records_seq     BIGINT      NOT NULL,  -- audit_record_states.seq of the last state sealed
    records_digest  VARCHAR     NOT NULL,  -- sha256 of the ledger rows this checkpoint added
    key_id          VARCHAR     NOT NULL,  -- which key sealed it (a fingerprint, not the key)
    sealed_at       TIMESTAMPTZ NOT NULL,
    run_id          VARCHAR,
    seal            VARCHAR     NOT NULL   -- HMAC-SHA256, hex
);

-- The record ledger (records.py): the state of each exception and order posting after every
-- change the store made, as a hash, so that an edit, deletion or insertion made outside the
-- store is caught by comparing the tables with their last sealed state.
CREATE TABLE IF NOT EXISTS audit_record_states (
    seq          BIGINT      NOT NULL,  -- gapless from 1
    table_name   VARCHAR     NOT NULL,  -- exceptions | order_postings
    record_key   VARCHAR     NOT NULL,  -- exception_id | portal_order_id
    state_hash   VARCHAR     USING COMPRESSION uncompressed,  -- NULL: the row was removed
    recorded_at  TIMESTAMPTZ NOT NULL,
    run_id       VARCHAR
);

CREATE SEQUENCE IF NOT EXISTS exception_number START 1;

CREATE TABLE IF NOT EXISTS exceptions (
    exception_id     VARCHAR     NOT NULL,  -- EX-000001: short enough to type in the CLI
    entity           VARCHAR     NOT NULL,
    entity_key       VARCHAR     NOT NULL,
    account_code     VARCHAR,
    category         VARCHAR     NOT NULL,
    reason_code      VARCHAR     NOT NULL,
    message          VARCHAR     NOT NULL,
    status           VARCHAR     NOT NULL,  -- open | approved | resolved | ignored
    opened_at        TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    resolved_by      VARCHAR,
    payload          JSON,
    run_id           VARCHAR,               -- the run that opened it
    last_run_id      VARCHAR,               -- the run that last saw or changed it
    attempts         INTEGER     NOT NULL,  -- how many runs hit this same problem
    last_retry_at    TIMESTAMPTZ,
    decision         JSON,                  -- e.g. {"accept": "erp_price"}
    resolution_note  VARCHAR,
    resolved_at      TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS reconciliation_lines (
    month            VARCHAR     NOT NULL,  -- YYYY-MM
    portal_order_id  VARCHAR,
    erp_order_no     VARCHAR,
    account_code     VARCHAR,
    currency         VARCHAR,
    portal_gross     DECIMAL(18, 4),
    erp_gross        DECIMAL(18, 4),
    difference       DECIMAL(18, 4),
    outcome          VARCHAR     NOT NULL,
    reason           VARCHAR,
    run_id           VARCHAR,
    computed_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS order_postings (
    portal_order_id  VARCHAR     NOT NULL,
    erp_order_no     VARCHAR,
    account_code     VARCHAR,
    posted_at        TIMESTAMPTZ,
    currency         VARCHAR,
    portal_gross     DECIMAL(18, 4),
    erp_gross        DECIMAL(18, 4),
    payment_method   VARCHAR,
    erp_status       VARCHAR,
    run_id           VARCHAR,
    recorded_at      TIMESTAMPTZ NOT NULL
);

-- Every price pushed to the portal with its validity period; valid_to NULL = current.
CREATE TABLE IF NOT EXISTS price_history (
    price_list_slug  VARCHAR     NOT NULL,
    sku              VARCHAR     NOT NULL,
    min_quantity     DECIMAL(18, 4) NOT NULL,
    price            DECIMAL(18, 4) NOT NULL,
    currency         VARCHAR,
    valid_from       TIMESTAMPTZ NOT NULL,
    valid_to         TIMESTAMPTZ,
    run_id           VARCHAR
);

-- Which lists (and discount) each account had in the portal, and when.
CREATE TABLE IF NOT EXISTS customer_price_list_history (
    account_code         VARCHAR     NOT NULL,
    price_lists          VARCHAR[]   NOT NULL,
    discount_percentage  DECIMAL(9, 4) NOT NULL,
    valid_from           TIMESTAMPTZ NOT NULL,
    valid_to             TIMESTAMPTZ,
    run_id               VARCHAR
);
"""

VIEWS_SQL = (
    """
CREATE OR REPLACE VIEW v_order_postings AS
SELECT portal_order_id, erp_order_no, account_code, posted_at, currency,
       portal_gross, erp_gross, payment_method, erp_status
FROM order_postings;

-- Unresolved exceptions: "open" ones wait for a person, "approved" ones for their retry (the
-- exceptions table says which). Exactly the contract's columns; age_hours is computed when
-- queried.
CREATE OR REPLACE VIEW v_open_exceptions AS
SELECT exception_id, category, reason_code, entity_key, account_code, opened_at,
       round(epoch(current_timestamp - opened_at) / 3600.0, 1) AS age_hours,
       message
FROM exceptions
WHERE status IN ('open', 'approved');

-- variance = erp_gross - portal_gross: the ERP is the system of record, so a positive
-- variance means the ERP booked more than the portal charged. The body is the domain's own
-- summary (MONTH_END_SUMMARY_SQL), so the view, the close pack and the asset's metadata can
-- never disagree: a DUPLICATE_IN_ERP line names its portal order but is not a second portal
-- order, and a hand-written copy of the query here counted it twice.
CREATE OR REPLACE VIEW v_month_end_reconciliation AS
"""
    + MONTH_END_SUMMARY_SQL.strip()
    + """;
"""
)

# Tables exported for a shared warehouse, in dependency-free order.
EXPORTED_TABLES = (
    "audit_events",
    "audit_chain_tip",
    "audit_trail",
    "audit_checkpoints",
    "audit_record_states",
    "exceptions",
    "reconciliation_lines",
    "order_postings",
    "price_history",
    "customer_price_list_history",
)


def as_json_sql(text_sql: str) -> str:
    """SQL turning JSON text into JSON, keeping text that is not JSON as a JSON string, so
    one malformed snapshot never stops a batch from being recorded."""
    # One parse for the usual case (valid JSON); json_valid() and a cast parsed it twice.
    return f"coalesce(TRY_CAST({text_sql} AS JSON), to_json({text_sql}))"
