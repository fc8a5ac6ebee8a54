"""Month-end reconciliation: every order of a month, compared across the portal and the ERP.

One line per order (``reconciliation_lines`` in contracts/audit-and-finance.md), with one
``outcome`` and a ``reason`` written for a finance reader. The comparison is a handful of
DuckDB joins over in-memory DataFrames (no I/O, no loop per order), so a month of a million
orders reconciles in seconds.

How an ERP order is tied to a portal order
------------------------------------------
1. **By reference** (the rule the pipeline posts by): the ERP order's ``external_ref`` is the
   portal order id. This is the portal order's ERP record. ``external_ref`` is UNIQUE in the
   reference ERP; if an ERP without that constraint holds two, the lowest ``order_no`` is the
   record and the other is a duplicate.
2. Any other ERP order that points at a portal order which already has its ERP record is a
   **duplicate** (``DUPLICATE_IN_ERP``) when:

   - its ``external_ref`` is the portal order id followed by a separator (one of ``- _ / . # :``
     or a space) and a suffix, e.g. ``P-1001-2`` or ``P-1001/retry``; or
   - its ``po_number`` or ``external_ref`` is the portal order's visible number (``SL-100001``)
     and it is booked to the same account; or
   - it has the same account, currency, ``po_number`` and total (to the cent) as that record
     and no reference of its own to another portal order.

   When the portal order has *no* ERP record under its own reference, such an ERP order is not
   a duplicate (there is only one ERP order for it): it stays ``MISSING_IN_PORTAL`` and both
   lines say that they look like each other, because approving or retrying the held portal
   order would then post it a second time.

Outcomes (one per line; a line with several problems takes the first in this order and its
reason lists them all): ``STATUS_MISMATCH`` (cancelled on one side only), ``CUSTOMER_MISMATCH``
(booked to another account), ``AMOUNT_MISMATCH`` (gross totals differ by more than the
tolerance, or the currencies differ), then ``MATCHED``. Portal orders without an ERP record are
``EXCEPTION_OPEN`` when the exception queue holds them (the reason is the queue's message) and
``MISSING_IN_ERP`` otherwise; ERP orders tied to no portal order are ``MISSING_IN_PORTAL``.

Which month a line belongs to
-----------------------------
Months are UTC, ``[first day 00:00:00, first day of the next month 00:00:00)``. A portal order
belongs to the month it was placed in (``placed_at``), and its ERP orders follow it whatever
their ``order_date`` (an order placed at 23:59:59 on the 31st and posted a minute later is
January's). An ERP order tied to no portal order belongs to the month of its ``order_date``.
So callers pass the portal and ERP orders of the month **with a few days' margin on both
sides**: rows outside the month are used only to decide who owns what.

Orders cancelled on the only side that has them (a portal order cancelled before posting, an
ERP order cancelled and tied to nothing, a duplicate already cancelled in the ERP) move no money
and produce no line.

Signs and totals
----------------
``difference`` is ERP minus portal. A line without a portal amount (``MISSING_IN_PORTAL``,
``DUPLICATE_IN_ERP``) has ``portal_gross`` NULL and ``difference`` = the ERP gross; a line
without an ERP amount has ``erp_gross`` NULL and ``difference`` = minus the portal gross. The
portal order of a duplicate is counted once, on its record's line (so the summary's
``portal_orders`` leaves duplicate lines out). Hence, per account and currency,
``sum(difference)`` = ``sum(erp_gross)`` - ``sum(portal_gross)`` = the summary's ``variance``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

import pandas as pd

from b2b_pipeline.duckdb_instance import scratch

#: Largest accepted gross difference per order, in the order's currency (mapping file's
#: ``price_tolerance``).
DEFAULT_TOLERANCE = 0.01

#: Characters that may separate a portal order id from a suffix in a duplicate's reference.
REFERENCE_SUFFIX_SEPARATORS = ("-", "_", "/", ".", "#", ":", " ")

PORTAL_CANCELLED = "cancelled"
ERP_CANCELLED = "CANCELLED"


class Outcome(StrEnum):
    """The verdict on one reconciliation line (contracts/audit-and-finance.md)."""

    MATCHED = "MATCHED"
    MISSING_IN_ERP = "MISSING_IN_ERP"
    MISSING_IN_PORTAL = "MISSING_IN_PORTAL"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    CUSTOMER_MISMATCH = "CUSTOMER_MISMATCH"
    DUPLICATE_IN_ERP = "DUPLICATE_IN_ERP"
    EXCEPTION_OPEN = "EXCEPTION_OPEN"


#: Outcomes that need no one's action at month end: agreed, or already waiting in the queue.
EXPLAINED_OUTCOMES = frozenset({Outcome.MATCHED, Outcome.EXCEPTION_OPEN})

RECONCILIATION_LINE_COLUMNS = [
    "month",
    "portal_order_id",
    "erp_order_no",
    "account_code",
    "currency",
    "portal_gross",
    "erp_gross",
    "difference",
    "outcome",
    "reason",
]

MONTH_END_SUMMARY_COLUMNS = [
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
]

PORTAL_ORDER_COLUMNS = [
    "portal_order_id",
    "visible_id",
    "accounting_id",
    "currency",
    "portal_gross",
    "status",
    "placed_at",
]
ERP_ORDER_COLUMNS = [
    "order_no",
    "external_ref",
    "account_code",
    "po_number",
    "currency",
    "gross_total",
    "status",
    "order_date",
]
OPEN_EXCEPTION_COLUMNS = ["entity_key", "category", "reason_code", "message"]

#: The per-account summary over a relation named ``reconciliation_lines``. The audit store can
#: build ``v_month_end_reconciliation`` from this same text, so the view and :func:`summarise`
#: can never disagree.
MONTH_END_SUMMARY_SQL = """
SELECT
    month,
    account_code,
    currency,
    count(*) FILTER (WHERE portal_order_id IS NOT NULL
                     AND outcome <> 'DUPLICATE_IN_ERP')                   AS portal_orders,
    count(erp_order_no)                                                   AS erp_orders,
    round(coalesce(sum(portal_gross), 0), 4)                              AS portal_gross,
    round(coalesce(sum(erp_gross), 0), 4)                                 AS erp_gross,
    round(coalesce(sum(erp_gross), 0) - coalesce(sum(portal_gross), 0), 4) AS variance,
    count(*) FILTER (WHERE outcome = 'MISSING_IN_ERP')                    AS missing_in_erp,
    count(*) FILTER (WHERE outcome = 'MISSING_IN_PORTAL')                 AS missing_in_portal,
    count(*) FILTER (WHERE outcome = 'AMOUNT_MISMATCH')                   AS amount_mismatches,
    count(*) FILTER (WHERE outcome = 'EXCEPTION_OPEN')                    AS open_exceptions
FROM reconciliation_lines
GROUP BY month, account_code, currency
ORDER BY month, account_code NULLS FIRST, currency
"""


# --------------------------------------------------------------------------------------------
# Months


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of a ``YYYY-MM`` month."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise ValueError(f"month must be written YYYY-MM, e.g. 2025-01; got {month!r}") from None
    if start.month == 12:
        end = start.replace(year=start.year + 1, month=1)
    else:
        end = start.replace(month=start.month + 1)
    return start, end


def month_of(moment: date | datetime) -> str:
    """The ``YYYY-MM`` month of a moment; a naive datetime is read as UTC."""
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_month(moment: date | datetime) -> str:
    """The ``YYYY-MM`` month before the one ``moment`` falls in (UTC).

    The monthly close runs on the 1st and reconciles the month that just ended.
    """
    year, month = (int(part) for part in month_of(moment).split("-"))
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


# --------------------------------------------------------------------------------------------
# Reconciliation


def reconcile_month(
    month: str,
    portal_orders: pd.DataFrame,
    erp_orders: pd.DataFrame,
    open_exceptions: pd.DataFrame,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> pd.DataFrame:
    """Compare a month's portal orders with the ERP's sales orders, order by order.

    ``portal_orders``: ``portal_order_id`` (unique), ``visible_id``, ``accounting_id``,
    ``currency``, ``portal_gross``, ``status``, ``placed_at``. Live and cancelled orders; other
    statuses (drafts, quotes) should be left out by the caller.
    ``erp_orders``: ``erp_sales_orders`` rows: ``order_no``, ``external_ref``,
    ``account_code``, ``po_number`` (optional), ``currency``, ``gross_total``, ``status``,
    ``order_date``.
    ``open_exceptions``: the open queue: ``entity_key`` (the portal order id), ``category``,
    ``reason_code``, ``message``.

    Pass a few days either side of the month (see the module notes); returns the
    ``reconciliation_lines`` rows of ``month`` only, sorted by account and order.
    """
    start, end = month_bounds(month)
    with scratch() as con:
        con.register("portal_in", _portal_input(portal_orders))
        con.register("erp_in", _erp_input(erp_orders))
        con.register("exceptions_in", _exceptions_input(open_exceptions))
        params = {
            "start": start.replace(tzinfo=None),
            "end": end.replace(tzinfo=None),
        }
        for statement in _STAGING_SQL:
            con.execute(statement, params if "$start" in statement else None)
        lines = con.execute(
            _LINES_SQL,
            {"month": month, "tolerance": float(tolerance) + _FLOAT_SLACK},
        ).df()
    return _typed_lines(month, lines)


def summarise(lines: pd.DataFrame) -> pd.DataFrame:
    """Per month, account and currency: counts and money (``v_month_end_reconciliation``)."""
    with scratch() as con:
        con.register("reconciliation_lines", _lines_input(lines))
        summary = con.execute(MONTH_END_SUMMARY_SQL).df()
    counts = [
        "portal_orders",
        "erp_orders",
        "missing_in_erp",
        "missing_in_portal",
        "amount_mismatches",
        "open_exceptions",
    ]
    summary[counts] = summary[counts].astype("int64")
    for column in ("portal_gross", "erp_gross", "variance"):
        summary[column] = summary[column].astype("float64")
    return summary[MONTH_END_SUMMARY_COLUMNS]


@dataclass(frozen=True)
class UnexplainedDifferences:
    """Lines someone must act on at month end: every outcome but MATCHED and EXCEPTION_OPEN."""

    lines: pd.DataFrame
    #: How many lines.
    count: int
    #: Per currency, the sum of the absolute differences (money at stake, not a net figure).
    money: dict[str, float]

    def __bool__(self) -> bool:
        return self.count > 0


def unexplained(lines: pd.DataFrame) -> UnexplainedDifferences:
    """The lines not MATCHED, not held in the exception queue and not an approved difference
    (an optional ``approved_difference`` column), with their count and money."""
    explained = {outcome.value for outcome in EXPLAINED_OUTCOMES}
    unexplained_mask = ~lines["outcome"].isin(explained)
    if "approved_difference" in lines:
        # A difference finance approved when the order was posted (accept the ERP or the
        # portal price) stays AMOUNT_MISMATCH, by contract, but is explained: its reason names
        # who approved which price.
        unexplained_mask &= ~lines["approved_difference"].fillna(False).astype(bool)
    open_lines = lines.loc[unexplained_mask].reset_index(drop=True)
    money = open_lines["difference"].abs().groupby(open_lines["currency"].fillna("")).sum().round(4)
    return UnexplainedDifferences(
        lines=open_lines,
        count=len(open_lines),
        money={str(currency): float(amount) for currency, amount in money.items()},
    )


def outcome_counts(lines: pd.DataFrame) -> dict[str, int]:
    """How many lines per outcome, every outcome listed (zero included), in catalogue order."""
    counts = lines["outcome"].value_counts()
    return {outcome.value: int(counts.get(outcome.value, 0)) for outcome in Outcome}


# --------------------------------------------------------------------------------------------
# Inputs: only the columns the comparison reads, with timestamps as naive UTC (DuckDB
# TIMESTAMP) so that month arithmetic is plain comparison.

# Float sums drift by a few 1e-12; without slack a difference of exactly the tolerance
# (0.01) could read as 0.0100000001 and be reported.
_FLOAT_SLACK = 1e-9


def _portal_input(frame: pd.DataFrame) -> pd.DataFrame:
    _require(frame, PORTAL_ORDER_COLUMNS, "portal_orders")
    return pd.DataFrame(
        {
            "portal_order_id": frame["portal_order_id"],
            "visible_id": frame["visible_id"],
            "accounting_id": frame["accounting_id"],
            "currency": frame["currency"],
            "portal_gross": _money(frame["portal_gross"]),
            "status": frame["status"],
            "placed_at": _naive_utc(frame["placed_at"]),
        }
    )


def _erp_input(frame: pd.DataFrame) -> pd.DataFrame:
    _require(frame, [c for c in ERP_ORDER_COLUMNS if c != "po_number"], "erp_orders")
    po_number = frame["po_number"] if "po_number" in frame else pd.Series(None, index=frame.index)
    return pd.DataFrame(
        {
            "order_no": frame["order_no"],
            "external_ref": frame["external_ref"],
            "account_code": frame["account_code"],
            "po_number": po_number.astype(object),
            "currency": frame["currency"],
            "gross_total": _money(frame["gross_total"]),
            "status": frame["status"],
            "order_date": _naive_utc(frame["order_date"]),
        }
    )


def _exceptions_input(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:  # an empty queue may come without its columns
        return pd.DataFrame(columns=OPEN_EXCEPTION_COLUMNS, dtype=object)
    _require(frame, OPEN_EXCEPTION_COLUMNS, "open_exceptions")
    return frame[OPEN_EXCEPTION_COLUMNS].astype(object)


def _lines_input(frame: pd.DataFrame) -> pd.DataFrame:
    _require(frame, RECONCILIATION_LINE_COLUMNS, "reconciliation lines")
    lines = frame[RECONCILIATION_LINE_COLUMNS].copy()
    for column in ("portal_gross", "erp_gross", "difference"):
        lines[column] = _money(lines[column])
    lines["erp_order_no"] = lines["erp_order_no"].astype("Int64")
    return lines


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")


def _money(values: pd.Series) -> pd.Series:
    # The ERP gives NUMERIC as Decimal objects; comparison within a tolerance is done in float.
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _naive_utc(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values  # naive: already UTC by the contract
    return pd.to_datetime(values, utc=True, format="mixed").dt.tz_localize(None)


def _typed_lines(month: str, lines: pd.DataFrame) -> pd.DataFrame:
    # Added here rather than in SQL: one shared string instead of a million converted ones.
    lines.insert(0, "month", month)
    lines["erp_order_no"] = lines["erp_order_no"].astype("Int64")
    for column in ("portal_gross", "erp_gross", "difference"):
        lines[column] = lines[column].astype("float64")
    return lines[RECONCILIATION_LINE_COLUMNS]


# --------------------------------------------------------------------------------------------
# The comparison, in SQL. Staging tables first (typed, month ownership decided), then the links
# between ERP and portal orders, then the four kinds of line.

_SEPARATORS_SQL = ", ".join(f"'{separator}'" for separator in REFERENCE_SUFFIX_SEPARATORS)

_STAGING_SQL = [
    # Text for reasons: a missing value reads "(none)" instead of blanking the whole sentence
    # (DuckDB's format() returns NULL when any argument is NULL).
    "CREATE TEMP MACRO said(x) AS coalesce(CAST(x AS VARCHAR), '(none)')",
    "CREATE TEMP MACRO money(x) AS coalesce(printf('%.2f', x), '(no amount)')",
    # The month's portal orders, and the ids of the others passed (the margin either side),
    # which only serve to tell whose month an ERP order belongs to.
    """
    CREATE TEMP TABLE month_portal AS
    SELECT CAST(portal_order_id AS VARCHAR)           AS portal_order_id,
           CAST(visible_id AS VARCHAR)                AS visible_id,
           CAST(accounting_id AS VARCHAR)             AS accounting_id,
           CAST(currency AS VARCHAR)                  AS currency,
           CAST(portal_gross AS DOUBLE)               AS portal_gross,
           lower(CAST(status AS VARCHAR))             AS status
    FROM portal_in
    WHERE CAST(placed_at AS TIMESTAMP) >= $start AND CAST(placed_at AS TIMESTAMP) < $end
    """,
    """
    CREATE TEMP TABLE other_month_portal AS
    SELECT CAST(portal_order_id AS VARCHAR) AS portal_order_id
    FROM portal_in
    WHERE NOT coalesce(CAST(placed_at AS TIMESTAMP) >= $start
                       AND CAST(placed_at AS TIMESTAMP) < $end, false)
    """,
    # ERP orders this month owns: those whose reference names a portal order follow that
    # order's month; the rest follow their own order_date.
    """
    CREATE TEMP TABLE erp AS
    SELECT e.*,
           m.portal_order_id IS NOT NULL AS has_ref,
           -- external_ref is UNIQUE in the reference ERP; elsewhere the lowest number is the
           -- record and any other is a duplicate.
           CASE WHEN m.portal_order_id IS NOT NULL THEN
               row_number() OVER (PARTITION BY e.external_ref ORDER BY e.order_no)
           END AS ref_rank
    FROM (
        SELECT CAST(order_no AS BIGINT)                AS order_no,
               CAST(external_ref AS VARCHAR)           AS external_ref,
               CAST(account_code AS VARCHAR)           AS account_code,
               CAST(po_number AS VARCHAR)              AS po_number,
               CAST(currency AS VARCHAR)               AS currency,
               CAST(gross_total AS DOUBLE)             AS erp_gross,
               upper(CAST(status AS VARCHAR))          AS status,
               coalesce(CAST(order_date AS TIMESTAMP) >= $start
                        AND CAST(order_date AS TIMESTAMP) < $end, true) AS dated_in_month
        FROM erp_in
    ) AS e
    LEFT JOIN month_portal AS m ON m.portal_order_id = e.external_ref
    LEFT JOIN other_month_portal AS o ON o.portal_order_id = e.external_ref
    WHERE m.portal_order_id IS NOT NULL OR (o.portal_order_id IS NULL AND e.dated_in_month)
    """,
    # Open exceptions per portal order; several reasons for one order are read one after another.
    """
    CREATE TEMP TABLE held AS
    SELECT CAST(entity_key AS VARCHAR) AS portal_order_id,
           string_agg(
               format('Held in the exception queue ({} {}): {}',
                      said(category), said(reason_code), said(message)),
               ' ' ORDER BY CAST(reason_code AS VARCHAR)) AS held_reason
    FROM exceptions_in
    WHERE entity_key IS NOT NULL
    GROUP BY 1
    """,
    # Link 1, by reference: a portal order's ERP record.
    """
    CREATE TEMP VIEW records AS
    SELECT external_ref AS portal_order_id, * FROM erp WHERE ref_rank = 1
    """,
    "CREATE TEMP VIEW erp_unreferenced AS SELECT * FROM erp WHERE NOT has_ref",
    # Links 2-4, from ERP orders without a reference of their own. One link per ERP order: the
    # most specific rule wins (suffix, then visible number, then same PO and total).
    f"""
    CREATE TEMP TABLE soft_links AS
    WITH id_lengths AS (
        SELECT DISTINCT length(portal_order_id) AS n FROM month_portal
    ),
    suffixed AS (
        SELECT u.order_no, p.portal_order_id, 1 AS rule_rank, 'suffix' AS rule
        FROM erp_unreferenced AS u
        CROSS JOIN id_lengths AS l
        JOIN month_portal AS p ON p.portal_order_id = left(u.external_ref, l.n)
        WHERE length(u.external_ref) > l.n + 1
          AND substr(u.external_ref, l.n + 1, 1) IN ({_SEPARATORS_SQL})
    ),
    visible_in_po AS (
        SELECT u.order_no, p.portal_order_id, 2 AS rule_rank, 'visible' AS rule
        FROM erp_unreferenced AS u
        JOIN month_portal AS p
          ON p.visible_id = u.po_number AND p.accounting_id = u.account_code
    ),
    visible_in_ref AS (
        SELECT u.order_no, p.portal_order_id, 2 AS rule_rank, 'visible' AS rule
        FROM erp_unreferenced AS u
        JOIN month_portal AS p
          ON p.visible_id = u.external_ref AND p.accounting_id = u.account_code
    ),
    same_po_and_total AS (
        SELECT u.order_no, r.portal_order_id, 3 AS rule_rank, 'same_po' AS rule
        FROM erp_unreferenced AS u
        JOIN records AS r
          ON r.account_code = u.account_code
         AND r.po_number = u.po_number
         AND r.currency = u.currency
         AND round(r.erp_gross, 2) = round(u.erp_gross, 2)
    )
    SELECT order_no, portal_order_id, rule
    FROM (
        SELECT * FROM suffixed
        UNION ALL SELECT * FROM visible_in_po
        UNION ALL SELECT * FROM visible_in_ref
        UNION ALL SELECT * FROM same_po_and_total
    )
    QUALIFY row_number() OVER (PARTITION BY order_no ORDER BY rule_rank, portal_order_id) = 1
    """,
    # A soft link to a portal order that has its ERP record is a duplicate; otherwise the two
    # only look alike (reported on both lines, decided by a person).
    """
    CREATE TEMP TABLE duplicates AS
    SELECT order_no, external_ref AS portal_order_id, 'same_ref' AS rule
    FROM erp WHERE ref_rank > 1
    UNION ALL
    SELECT s.order_no, s.portal_order_id, s.rule
    FROM soft_links AS s
    WHERE EXISTS (SELECT 1 FROM records AS r WHERE r.portal_order_id = s.portal_order_id)
    """,
    """
    CREATE TEMP TABLE lookalikes AS
    SELECT s.order_no, s.portal_order_id
    FROM soft_links AS s
    WHERE NOT EXISTS (SELECT 1 FROM records AS r WHERE r.portal_order_id = s.portal_order_id)
    """,
]

_PORTAL_NAME = "coalesce(p.visible_id, p.portal_order_id)"

_LINES_SQL = f"""
WITH record_lines AS (
    SELECT p.portal_order_id,
           e.order_no,
           e.account_code,
           e.currency,
           p.portal_gross,
           e.erp_gross,
           (p.status = '{PORTAL_CANCELLED}') <> (e.status = '{ERP_CANCELLED}') AS status_differs,
           p.accounting_id IS NOT NULL
             AND p.accounting_id IS DISTINCT FROM e.account_code AS customer_differs,
           p.currency IS DISTINCT FROM e.currency AS currency_differs,
           coalesce(abs(e.erp_gross - p.portal_gross) > $tolerance, true) AS amount_differs,
           p.status AS portal_status,
           e.status AS erp_status,
           p.accounting_id,
           p.currency AS portal_currency,
           {_PORTAL_NAME} AS portal_name
    FROM records AS e
    JOIN month_portal AS p USING (portal_order_id)
),
record_verdicts AS (
    SELECT *,
        CASE
            WHEN status_differs THEN 'STATUS_MISMATCH'
            WHEN customer_differs THEN 'CUSTOMER_MISMATCH'
            WHEN currency_differs OR amount_differs THEN 'AMOUNT_MISMATCH'
            ELSE 'MATCHED'
        END AS outcome,
        concat_ws(' ',
            CASE WHEN status_differs AND portal_status = '{PORTAL_CANCELLED}' THEN
                format('Portal order {{}} was cancelled but ERP order {{}} is still {{}}: cancel '
                       'it in the ERP so that it is neither shipped nor invoiced.',
                       portal_name, order_no, said(erp_status))
            WHEN status_differs THEN
                format('ERP order {{}} is CANCELLED but portal order {{}} is still {{}}: confirm '
                       'with the customer, then cancel the portal order or reinstate the ERP '
                       'order.', order_no, portal_name, said(portal_status))
            END,
            CASE WHEN customer_differs THEN
                format('ERP order {{}} is booked to account {{}} but the portal customer is '
                       'account {{}}: move the order to the right account in the ERP, or '
                       'correct the company''s account in the portal.',
                       order_no, said(account_code), accounting_id)
            END,
            CASE WHEN currency_differs THEN
                format('ERP order {{}} is in {{}} but portal order {{}} is in {{}}: the totals '
                       'cannot be compared; correct the currency of the ERP order.',
                       order_no, said(currency), portal_name, said(portal_currency))
            WHEN amount_differs THEN
                format('ERP order {{}} totals {{}} {{}} but portal order {{}} totals {{}} {{}} '
                       '(difference {{}}): find who changed the order and whether the customer '
                       'must be re-invoiced.',
                       order_no, money(erp_gross), said(currency), portal_name,
                       money(portal_gross), said(currency), money(erp_gross - portal_gross))
            END
        ) AS problems
    FROM record_lines
),
duplicate_lines AS (
    SELECT d.portal_order_id,
           e.order_no,
           e.account_code,
           e.currency,
           e.erp_gross,
           format('ERP order {{}} is a second ERP order for portal order {{}}, which is already '
                  'ERP order {{}}: {{}}. Cancel the duplicate in the ERP.',
                  e.order_no, {_PORTAL_NAME}, r.order_no,
                  CASE d.rule
                      WHEN 'suffix' THEN format('its reference ''{{}}'' is the portal order id '
                                                'with a suffix', said(e.external_ref))
                      WHEN 'visible' THEN format('it carries the portal order number {{}} and is '
                                                 'booked to the same account', said(p.visible_id))
                      WHEN 'same_po' THEN format('it has the same account, PO number ''{{}}'' '
                                                 'and total', said(e.po_number))
                      ELSE 'it carries the same portal reference'
                  END) AS reason
    FROM duplicates AS d
    JOIN erp AS e USING (order_no)
    JOIN records AS r ON r.portal_order_id = d.portal_order_id
    JOIN month_portal AS p ON p.portal_order_id = d.portal_order_id
    WHERE e.status <> '{ERP_CANCELLED}'
),
portal_only_lines AS (
    SELECT p.portal_order_id,
           p.accounting_id AS account_code,
           p.currency,
           p.portal_gross,
           h.held_reason,
           concat_ws(' ',
               CASE WHEN h.held_reason IS NULL THEN
                   format('Portal order {{}} ({{}} {{}}) is not in the ERP and not in the '
                          'exception queue: check the latest orders run and the audit trail for '
                          'this order.', {_PORTAL_NAME}, money(p.portal_gross),
                          said(p.currency))
               ELSE h.held_reason END,
               CASE WHEN l.order_no IS NOT NULL THEN
                   format('ERP order {{}} looks like this order entered without its portal '
                          'reference: check it before approving or retrying, or the order will '
                          'be in the ERP twice.', l.order_no)
               END) AS reason
    FROM month_portal AS p
    LEFT JOIN held AS h USING (portal_order_id)
    LEFT JOIN (SELECT portal_order_id, min(order_no) AS order_no
               FROM lookalikes GROUP BY 1) AS l USING (portal_order_id)
    WHERE p.status <> '{PORTAL_CANCELLED}'
      AND NOT EXISTS (SELECT 1 FROM records AS r WHERE r.portal_order_id = p.portal_order_id)
),
erp_only_lines AS (
    SELECT e.order_no,
           e.account_code,
           e.currency,
           e.erp_gross,
           concat_ws(' ',
               format('ERP order {{}} for account {{}} ({{}}) matches no portal order placed '
                      'in {{}}: it was entered in the ERP directly or carries a wrong '
                      'reference; confirm it with the account manager.',
                      e.order_no, said(e.account_code),
                      concat_ws(', ',
                          money(e.erp_gross) || ' ' || said(e.currency),
                          coalesce(format('reference ''{{}}''', e.external_ref),
                                   'no portal reference'),
                          format('PO ''{{}}''', e.po_number)),
                      $month),
               CASE WHEN l.portal_order_id IS NOT NULL THEN
                   format('It looks like portal order {{}}, which is not in the ERP under its '
                          'own reference.', {_PORTAL_NAME})
               END) AS reason
    FROM erp_unreferenced AS e
    LEFT JOIN lookalikes AS l USING (order_no)
    LEFT JOIN month_portal AS p ON p.portal_order_id = l.portal_order_id
    WHERE e.status <> '{ERP_CANCELLED}'
      AND NOT EXISTS (SELECT 1 FROM duplicates AS d WHERE d.order_no = e.order_no)
)
SELECT portal_order_id, order_no AS erp_order_no, account_code, currency,
       portal_gross, erp_gross,
       round(coalesce(erp_gross, 0) - coalesce(portal_gross, 0), 4) AS difference, outcome,
       CASE WHEN outcome = 'MATCHED' THEN
           CASE WHEN erp_status = '{ERP_CANCELLED}'
                THEN 'Cancelled in both systems, with the same account and total.'
                ELSE 'Same account, status and total in both systems.' END
       ELSE problems END AS reason
FROM record_verdicts
UNION ALL
SELECT portal_order_id, order_no, account_code, currency,
       NULL, erp_gross, round(coalesce(erp_gross, 0), 4), 'DUPLICATE_IN_ERP', reason
FROM duplicate_lines
UNION ALL
SELECT portal_order_id, NULL, account_code, currency,
       portal_gross, NULL, round(-coalesce(portal_gross, 0), 4),
       CASE WHEN held_reason IS NULL THEN 'MISSING_IN_ERP' ELSE 'EXCEPTION_OPEN' END, reason
FROM portal_only_lines
UNION ALL
SELECT NULL, order_no, account_code, currency,
       NULL, erp_gross, round(coalesce(erp_gross, 0), 4), 'MISSING_IN_PORTAL', reason
FROM erp_only_lines
ORDER BY account_code NULLS FIRST, portal_order_id NULLS LAST, erp_order_no NULLS FIRST
"""
