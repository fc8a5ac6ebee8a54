"""The SparkLayer API client: every call the pipeline makes to the portal goes through here.

``SparkLayerClient`` speaks the endpoints of contracts/sparklayer-api.md §2-6 in the pipeline's
terms (customers, price lists, stock, purchases, the sync log) and hides the rest:

- **Paging**: the three styles of the API, as iterators that fetch a page only when the caller
  has consumed the previous one.
- **Batch writes**: split at the API maximum; rows the portal refuses by line are removed, the
  rest of that batch resent once, and the refused rows returned with their reasons.
- **Idempotent setup**: creating a group, price list or stock location that already exists
  answers None instead of failing.
- **Transport** (``transport.py``): token, pacing, retries and typed errors (``errors.py``).

The wire shapes it assumes (paths, page sizes, batch maxima, field names) live in ``wire.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyrate_limiter import Limiter

from b2b_pipeline.connectors.sparklayer import wire
from b2b_pipeline.connectors.sparklayer.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Problem,
)
from b2b_pipeline.connectors.sparklayer.transport import (
    ANYTHING,
    ARRAY,
    LIST,
    PAGE,
    ClientStats,
    Transport,
    describe,
)

logger = logging.getLogger(__name__)

# set_internal_identifier re-reads and retries a conflicting PUT at most this many times.
CONFLICT_REREADS = 3


@dataclass(frozen=True)
class RejectedRow:
    """A row of a batch write the portal refused, and why (for the exception queue)."""

    item: dict[str, Any]
    field: str | None
    message: str


@dataclass(frozen=True)
class BatchResult:
    """What a batch write did: ``sent`` rows applied, in ``calls`` write calls; ``rejected`` not.

    Every item handed to the writer is either counted in ``sent`` or listed in ``rejected``.
    """

    calls: int = 0
    sent: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_page_size(page_size: int, maximum: int) -> None:
    if not 1 <= page_size <= maximum:
        raise ValueError(f"page size must be between 1 and {maximum}, not {page_size}")


def _check_lookup(lookup_by: str, allowed: tuple[str, ...]) -> None:
    if lookup_by not in allowed:
        raise ValueError(f"lookup_by must be one of {', '.join(allowed)}, not {lookup_by!r}")


class SparkLayerClient:
    """A SparkLayer portal site, as seen by the pipeline.

    ``requests_per_second`` paces the calls of every client of this site in the process
    (``burst`` calls may go at once after a pause; default one second's worth). ``timeout`` is
    the read timeout of each request; ``max_attempts`` bounds the tries of one call (first try
    included); ``backoff_max`` caps the wait between tries. Safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        site_id: str,
        client_id: str,
        client_secret: str,
        *,
        requests_per_second: float = 20.0,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_max: float = 30.0,
        user_agent: str | None = None,
        burst: int | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._transport = Transport(
            base_url,
            site_id,
            client_id,
            client_secret,
            requests_per_second=requests_per_second,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_max=backoff_max,
            user_agent=user_agent,
            burst=burst,
            limiter=limiter,
        )
        self.base_url = self._transport.base_url
        self.site_id = site_id

    def __repr__(self) -> str:
        return f"SparkLayerClient(base_url={self.base_url!r}, site_id={self.site_id!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SparkLayerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def stats(self) -> ClientStats:
        """Calls, retries and time spent waiting on rate limits since creation or reset."""
        return self._transport.stats

    def reset_stats(self) -> None:
        self._transport.reset_stats()

    def iter_customers(self, page_size: int = wire.CUSTOMERS_PAGE_SIZE_MAX) -> Iterator[dict]:
        _check_page_size(page_size, wire.CUSTOMERS_PAGE_SIZE_MAX)
        return self._iter_enveloped_pages(wire.CUSTOMERS_PATH, page_size)

    def get_customer(self, identifier: str, lookup_by: str = "platform") -> dict | None:
        _check_lookup(lookup_by, wire.CUSTOMER_LOOKUPS)
        return self._get_or_none(
            wire.CUSTOMER_PATH, {"lookup_by": lookup_by, "identifier": identifier}
        )

    def put_customer(self, customer: Mapping[str, Any], lookup_by: str = "platform") -> dict:
        """Create or fully replace a customer, addressed by its ``external_id`` or ``id``."""
        _check_lookup(lookup_by, wire.CUSTOMER_LOOKUPS)
        key = wire.CUSTOMER_EXTERNAL_ID_FIELD if lookup_by == "platform" else wire.CUSTOMER_ID_FIELD
        identifier = customer.get(key)
        if not identifier:
            raise ValueError(f"a customer put by {lookup_by} needs its {key!r}")
        return self._transport.call(
            "PUT",
            wire.CUSTOMER_PATH,
            {"lookup_by": lookup_by, "identifier": identifier},
            body=dict(customer),
        )

    def list_customer_groups(self) -> list[dict]:
        return (
            wire.list_records(self._transport.call("GET", wire.CUSTOMER_GROUPS_PATH, shape=LIST))
            or []
        )

    def create_customer_group(self, group: Mapping[str, Any]) -> dict | None:
        """Create a group; None when a group with that slug already exists."""
        return self._create(wire.CUSTOMER_GROUPS_PATH, dict(group))

    # ---------------------------------------------------------------- price lists (§3)

    def iter_price_lists(self, page_size: int = wire.PRICE_LISTS_PAGE_SIZE_MAX) -> Iterator[dict]:
        _check_page_size(page_size, wire.PRICE_LISTS_PAGE_SIZE_MAX)
        return self._iter_enveloped_pages(wire.PRICE_LISTS_PAGED_PATH, page_size)

    def create_price_list(self, slug: str, name: str, currency_code: str) -> dict | None:
        """Create a price list; None when a list with that slug already exists."""
        return self._create(
            wire.PRICE_LISTS_CREATE_PATH, wire.price_list_request(slug, name, currency_code)
        )

    def iter_pricing(
        self, slug: str, page_size: int = wire.PRICING_PAGE_SIZE_MAX
    ) -> Iterator[dict]:
        """Every SKU of a price list with its breaks: ``{"sku", "pricing": [...]}``."""
        _check_page_size(page_size, wire.PRICING_PAGE_SIZE_MAX)
        return self._iter_array_pages(wire.PRICING_PATH, {"slug": slug}, page_size)

    def patch_pricing(self, slug: str, items: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Replace the breaks of the SKUs sent, in one list; ``"pricing": []`` removes a SKU."""
        return self._write_batches("PATCH", wire.PRICING_PATH, {"slug": slug}, items)

    def batch_update_pricing(self, items: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Like ``patch_pricing`` across lists: each item carries its ``price_list_slug``."""
        return self._write_batches("PATCH", wire.BATCH_UPDATE_PRICING_PATH, None, items)

    # ---------------------------------------------------------------- stock (§4)

    def list_stock_locations(self) -> list[dict]:
        return (
            wire.list_records(self._transport.call("GET", wire.STOCK_LOCATIONS_PATH, shape=LIST))
            or []
        )

    def create_stock_location(self, name: str, external_id: str) -> dict | None:
        """Create a stock location; None when one with that external_id already exists."""
        return self._create(
            wire.STOCK_LOCATIONS_PATH, wire.stock_location_request(name, external_id)
        )

    def batch_update_stock(self, rows: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Overwrite the stock level of each sku × location sent."""
        return self._write_batches("POST", wire.BATCH_UPDATE_STOCK_PATH, None, rows)

    def batch_fetch_stock(
        self, skus: Iterable[str], all_stock_locations: bool = True
    ) -> list[dict]:
        """Stock levels of ``skus`` (SKUs with no level are left out by the portal)."""
        levels: list[dict] = []
        for chunk in _chunks(list(skus), wire.BATCH_FETCH_STOCK_MAX_SKUS):
            body = self._transport.call(
                "POST",
                wire.BATCH_FETCH_STOCK_PATH,
                body=wire.batch_fetch_stock_request(chunk, all_stock_locations),
                shape=LIST,
            )
            levels.extend(wire.list_records(body) or [])
        return levels

    # ---------------------------------------------------------------- purchases (§5)

    def iter_purchases(
        self, updated_since: datetime | None = None, limit: int = wire.PURCHASES_LIMIT_MAX
    ) -> Iterator[dict]:
        """Purchases, oldest first, changed at or after ``updated_since`` when given.

        The filter is a hint: a server that ignores it returns everything, so callers must
        still filter on ``dates.updated_at`` themselves.
        """
        _check_page_size(limit, wire.PURCHASES_LIMIT_MAX)
        params = {wire.UPDATED_SINCE_PARAM: wire.timestamp(updated_since)} if updated_since else {}
        return self._iter_offset_pages(wire.PURCHASES_PATH, limit, params)

    def get_purchase(self, identifier: str, lookup_by: str = "sparklayer") -> dict | None:
        _check_lookup(lookup_by, wire.PURCHASE_LOOKUPS)
        return self._get_or_none(
            wire.PURCHASE_PATH, {"lookup_by": lookup_by, "identifier": identifier}
        )

    def put_purchase(self, purchase: Mapping[str, Any], lookup_by: str = "sparklayer") -> dict:
        """Create or fully replace a purchase, addressed by one of its identifiers."""
        _check_lookup(lookup_by, wire.PURCHASE_LOOKUPS)
        identifiers = purchase.get(wire.PURCHASE_IDENTIFIERS_FIELD) or {}
        identifier = identifiers.get(lookup_by)
        if not identifier and lookup_by == "sparklayer":
            identifier = purchase.get(wire.PURCHASE_ID_FIELD)
        if not identifier:
            raise ValueError(f"a purchase put by {lookup_by} needs that identifier")
        return self._transport.call(
            "PUT",
            wire.PURCHASE_PATH,
            {"lookup_by": lookup_by, "identifier": identifier},
            body=dict(purchase),
        )

    def set_internal_identifier(self, purchase_id: str, internal: str) -> dict:
        """Write the ERP order number into ``purchase_identifiers.internal``.

        Read, modify, write: a 409 means someone changed the purchase in between, so the
        purchase is read again and the change reapplied (at most ``CONFLICT_REREADS`` times),
        never resent stale. Writing the number it already has makes no call.
        """
        path_params = {"lookup_by": "sparklayer", "identifier": purchase_id}

        def read_modify_write() -> dict:
            purchase = self._transport.call("GET", wire.PURCHASE_PATH, path_params)
            identifiers = purchase.get(wire.PURCHASE_IDENTIFIERS_FIELD) or {}
            if identifiers.get(wire.PURCHASE_INTERNAL_IDENTIFIER) == internal:
                return purchase
            updated = {
                **purchase,
                wire.PURCHASE_IDENTIFIERS_FIELD: {
                    **identifiers,
                    wire.PURCHASE_INTERNAL_IDENTIFIER: internal,
                },
            }
            return self._transport.call(
                "PUT", wire.PURCHASE_PATH, path_params, body=updated, retry_conflicts=False
            )

        return self._transport.with_retries(
            "PUT",
            wire.PURCHASE_PATH,
            read_modify_write,
            retry_on=lambda error: isinstance(error, ConflictError) and error.retryable,
            attempts=CONFLICT_REREADS + 1,
        )

    # ---------------------------------------------------------------- sync log (§6)

    def put_sync_log(self, integration: str, data_type: str, body: Mapping[str, Any]) -> dict:
        answer = self._transport.call(
            "PUT",
            wire.SYNC_LOG_PATH,
            {"integration": integration, "data_type": data_type},
            body=dict(body),
            shape=ANYTHING,
        )
        return answer if isinstance(answer, dict) else {}

    def get_sync_log(self, integration: str, data_type: str) -> dict | None:
        return self._get_or_none(
            wire.SYNC_LOG_PATH, {"integration": integration, "data_type": data_type}
        )

    # ---------------------------------------------------------------- building blocks

    def _get_or_none(self, endpoint: str, path_params: Mapping[str, str]) -> dict | None:
        try:
            return self._transport.call("GET", endpoint, path_params)
        except NotFoundError:
            return None

    def _create(self, endpoint: str, body: dict[str, Any]) -> dict | None:
        try:
            created = self._transport.call("POST", endpoint, body=body, shape=ANYTHING)
        except ConflictError as exists:
            if not exists.already_exists:
                raise
            logger.info("SparkLayer POST %s: already exists, nothing to create", endpoint)
            return None
        return created if isinstance(created, dict) else dict(body)

    def _iter_enveloped_pages(self, endpoint: str, page_size: int) -> Iterator[dict]:
        """Numbered pages ``{"data", "pagination"}``, followed up to ``total_pages``."""
        page = wire.FIRST_PAGE
        while True:
            body = self._transport.call(
                "GET",
                endpoint,
                params={wire.PAGE_PARAM: page, wire.PAGE_SIZE_PARAM: page_size},
                shape=PAGE,
            )
            records = wire.page_records(body) or []
            yield from records
            total_pages = wire.page_count(body)
            last = page >= total_pages if total_pages is not None else len(records) < page_size
            # An empty page ends the walk even if total_pages says otherwise: never loop forever.
            if last or not records:
                return
            page += 1

    def _iter_array_pages(
        self, endpoint: str, path_params: Mapping[str, str], page_size: int
    ) -> Iterator[dict]:
        """Numbered pages as bare arrays; a page shorter than ``page_size`` is the last."""
        page = wire.FIRST_PAGE
        while True:
            records = self._transport.call(
                "GET",
                endpoint,
                path_params,
                params={wire.PAGE_PARAM: page, wire.PAGE_SIZE_PARAM: page_size},
                shape=ARRAY,
            )
            yield from records
            if len(records) < page_size:
                return
            page += 1

    def _iter_offset_pages(
        self, endpoint: str, limit: int, params: Mapping[str, str]
    ) -> Iterator[dict]:
        """``limit``/``offset`` pages as bare arrays; a page shorter than ``limit`` is the last."""
        offset = 0
        while True:
            records = self._transport.call(
                "GET",
                endpoint,
                params={**params, wire.LIMIT_PARAM: limit, wire.OFFSET_PARAM: offset},
                shape=ARRAY,
            )
            yield from records
            if len(records) < limit:
                return
            offset += len(records)

    def _write_batches(
        self,
        method: str,
        endpoint: str,
        path_params: Mapping[str, str] | None,
        items: Iterable[Mapping[str, Any]],
    ) -> BatchResult:
        """Send ``items`` in calls of at most ``BATCH_MAX_ITEMS``.

        A batch the portal refuses naming rows is resent once without them; the named rows come
        back in ``rejected`` with the portal's reason. Any other failure propagates: batches
        already sent stay applied, and every write here is safe to repeat on the next run.
        """
        calls = sent = 0
        rejected: list[RejectedRow] = []
        for batch in _chunks([dict(item) for item in items], wire.BATCH_MAX_ITEMS):
            try:
                self._transport.call(method, endpoint, path_params, body=batch, shape=ANYTHING)
            except InvalidRequestError as refused:
                named = _refused_rows(batch, refused)
                if not named:
                    raise  # a refusal of the whole request (bad shape): not a row problem
                rejected.extend(named.values())
                rest = [row for line, row in enumerate(batch) if line not in named]
                logger.warning(
                    "SparkLayer %s %s refused %d of %d rows; resending the other %d once",
                    method,
                    endpoint,
                    len(named),
                    len(batch),
                    len(rest),
                )
                calls += 1
                if rest:
                    resent, refused_again = self._resend_once(method, endpoint, path_params, rest)
                    calls += 1
                    sent += resent
                    rejected.extend(refused_again)
            else:
                calls += 1
                sent += len(batch)
        return BatchResult(calls=calls, sent=sent, rejected=rejected)

    def _resend_once(
        self,
        method: str,
        endpoint: str,
        path_params: Mapping[str, str] | None,
        rows: list[dict[str, Any]],
    ) -> tuple[int, list[RejectedRow]]:
        """Resend the rows the portal did not object to; if it refuses again, report them all."""
        try:
            self._transport.call(method, endpoint, path_params, body=rows, shape=ANYTHING)
        except InvalidRequestError as refused_again:
            named = _refused_rows(rows, refused_again)
            fallback = (
                "not applied: the portal refused this batch a second time "
                f"({describe(refused_again)}); the next sync sends it again"
            )
            return 0, [
                named.get(line) or RejectedRow(row, None, fallback) for line, row in enumerate(rows)
            ]
        return len(rows), []


def _refused_rows(
    batch: list[dict[str, Any]], refused: InvalidRequestError
) -> dict[int, RejectedRow]:
    """The rows of ``batch`` a 400 names, each with its field and reason(s)."""
    reasons: dict[int, list[Problem]] = {}
    for problem in refused.problems:
        if problem.line is not None and 0 <= problem.line < len(batch):
            reasons.setdefault(problem.line, []).append(problem)
    return {
        line: RejectedRow(
            item=batch[line],
            field=next((p.field for p in problems if p.field), None),
            message="; ".join(p.message or p.code or "refused" for p in problems),
        )
        for line, problems in sorted(reasons.items())
    }
