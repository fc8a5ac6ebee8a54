"""The portal's customers as the order rules need them, without re-reading all of them.

A run that finds one new order needs one customer, not the portal's 5,000 (20 list pages). The
customer sync remembers every customer it read and wrote (``SyncState.portal_customers``); an
order run takes a remembered customer when it is recent and carries an ERP account code, and
reads the rest (see :func:`portal_customers_for` for why that is safe).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from b2b_pipeline.connectors.sparklayer import purchases as wire
from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError
from b2b_pipeline.flows.ports import Document, Portal, SyncStateStore

# The portal customer columns the order rules read (``normalise_purchases``).
PORTAL_CUSTOMER_COLUMNS = ["id", "accounting_id", "company_name", "tax_exempt", "external_id"]
# A remembered portal customer is trusted this long (the customer sync, every 15 minutes,
# refreshes every row; so does every read below).
PORTAL_CUSTOMER_MAX_AGE = timedelta(minutes=20)
# Customers a run reads one by one before a full read of the list (250 a page) is cheaper.
CUSTOMER_LOOKUPS_PER_RUN = 10


log = logging.getLogger(__name__)

# A SparkLayer customer id is a UUID. Anything else a purchase names (a broken or hostile entry:
# 100,000 characters once made every lookup a 414 and stopped every order) is never looked up:
# its order is decided as one from a company the portal does not know, and queued.
PLAUSIBLE_CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Refusals that mean "not this customer", not "the portal cannot be used": one bad id must not
# stop the batch. Authentication, permission and rate limits still stop the run.
_NOT_THIS_CUSTOMER = frozenset({400, 404, 410, 414, 422})


def _customer_rows(documents: list[Document]) -> pd.DataFrame:
    return pd.DataFrame(
        [{column: doc.get(column) for column in PORTAL_CUSTOMER_COLUMNS} for doc in documents],
        columns=PORTAL_CUSTOMER_COLUMNS,
    )


def _remember(state: SyncStateStore, customers: pd.DataFrame, *, complete: bool) -> None:
    if customers.empty and not complete:
        return
    documents = [
        json.dumps(row, default=str, sort_keys=True)
        for row in customers[PORTAL_CUSTOMER_COLUMNS].to_dict(orient="records")
    ]
    state.remember_portal_customers(customers.assign(document=documents), complete=complete)


def remember_portal_customers(
    state: SyncStateStore, documents: list[Document], *, complete: bool
) -> None:
    """Keep portal customers as read or written (the customer sync calls this after its push,
    with everything it read and wrote: ``complete``)."""
    _remember(state, _customer_rows(documents), complete=complete)


def portal_customers_for(
    portal: Portal, state: SyncStateStore, purchases: Sequence[Any]
) -> pd.DataFrame:
    """The portal customers these purchases name, at the cost of what changed.

    A customer the pipeline saw in the last :data:`PORTAL_CUSTOMER_MAX_AGE` *with* an ERP
    account code is taken as seen: the portal's ``accounting_id`` is the ERP's account code,
    written by the customer sync (which remembers what it wrote), so a portal-side edit is drift
    the next sync reverts, not news. Every other customer is read now: one the pipeline has not
    seen (a company that registered a minute ago), and one it saw with no account code (it may
    have been mapped since: queueing its order as unmapped would be the expensive mistake). One
    by one when few, else the whole list, which refreshes every remembered row.
    """
    ids = sorted(
        {
            cid
            for cid in map(wire.customer_id, purchases)
            if cid and PLAUSIBLE_CUSTOMER_ID.fullmatch(cid)
        }
    )
    if not ids:
        return _customer_rows([])
    seen = state.portal_customers_seen_since(ids, datetime.now(UTC) - PORTAL_CUSTOMER_MAX_AGE)
    seen = seen[seen["accounting_id"].fillna("").astype(str).str.strip() != ""]
    known = _customer_rows([json.loads(doc) for doc in seen["document"]])
    missing = [cid for cid in ids if cid not in set(known["id"])]
    if not missing:
        return known
    if len(missing) > CUSTOMER_LOOKUPS_PER_RUN:
        everyone = _customer_rows(list(portal.iter_customers()))
        _remember(state, everyone, complete=True)
        return everyone
    found = [doc for cid in missing if (doc := _look_up(portal, cid)) is not None]
    read = _customer_rows(found)
    _remember(state, read, complete=False)
    return pd.concat([known, read], ignore_index=True) if not known.empty else read


def _look_up(portal: Portal, customer_id: str) -> Document | None:
    try:
        return portal.get_customer(customer_id, lookup_by="sparklayer")
    except SparkLayerError as refused:
        if refused.status not in _NOT_THIS_CUSTOMER:
            raise
        log.warning(
            "portal refused the lookup of customer %r (%s): its orders are decided as from an "
            "unknown company",
            customer_id[:80],
            refused.status,
        )
        return None
