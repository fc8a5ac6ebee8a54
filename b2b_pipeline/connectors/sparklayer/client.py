"""The SparkLayer API client: every call the pipeline makes to the portal goes through here.

``SparkLayerClient`` speaks the endpoints of contracts/sparklayer-api.md (version 2) §2-6 in the
pipeline's terms (customers, price lists, stock, purchases, the sync log) and hides the rest:

- **Paging**: numbered pages in an envelope (customers, price lists), and the newest-first
  offset pages of purchases, read so that a list changing while it is read loses nothing
  (``iter_purchases``); each as an iterator that fetches a page only when the caller has
  consumed the previous one. Pricing, groups, locations and transactions are one call each.
- **Batch writes**: split at the API maximum; rows the portal refuses by line are removed, the
  rest of that batch resent once, and the refused rows returned with their reasons.
- **Idempotent setup**: creating a group, price list or stock location that already exists
  (a 400 or a 409 saying so) is checked by reading it back and answers None, never retried.
- **Transport** (``transport.py``): token, pacing, retries and typed errors (``errors.py``).

The wire shapes it assumes (paths, parameters, page sizes, batch maxima, field names) live in
``wire.py``; the purchase document is read and written by ``purchases.py``.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from pyrate_limiter import Limiter

from b2b_pipeline.connectors.sparklayer import wire
from b2b_pipeline.connectors.sparklayer.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Problem,
    SparkLayerError,
)
from b2b_pipeline.connectors.sparklayer.purchases import (
    CALCULATED_PREFIX,
    customer_id,
    internal_id,
    purchase_id,
    purchase_type,
    purchase_updated_at,
    write_back_body,
)
from b2b_pipeline.connectors.sparklayer.transport import (
    ANYTHING,
    ARRAY,
    LIST,
    LIST_OR_EMPTY,
    OBJECT,
    PAGE,
    ClientStats,
    Transport,
    describe,
)

logger = logging.getLogger(__name__)

# set_internal_identifier re-reads and retries a conflicting PUT at most this many times.
CONFLICT_REREADS = 3
# Consecutive purchase pages overlap by one entry in this many (at least one entry): deletions
# above the reader of fewer entries than the overlap need no step back.
PURCHASE_PAGE_OVERLAP_SHARE = 20
# A purchase walk gives up (an error; the next run reads again) after this many step-backs.
PURCHASE_STEP_BACKS_MAX = 50
# After a walk of several pages, the head of the list is re-read for purchases that arrived or
# moved there meanwhile, at most this many times; later arrivals belong to the next poll.
PURCHASE_HEAD_REREADS_MAX = 3


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
        """A customer by ``platform`` (external_id), ``sparklayer`` (id) or ``email``; None when
        the portal has none."""
        _check_lookup(lookup_by, wire.CUSTOMER_LOOKUPS)
        return self._get_or_none(
            wire.CUSTOMER_PATH, {"lookup_by": lookup_by, "identifier": identifier}
        )

    def put_customer(self, customer: Mapping[str, Any], lookup_by: str = "platform") -> dict:
        """Create or fully replace a customer, addressed by its ``external_id``, ``id`` or
        ``email``. Fields left out are cleared by the portal [doc]: send the whole customer."""
        _check_lookup(lookup_by, wire.CUSTOMER_LOOKUPS)
        key = wire.CUSTOMER_LOOKUP_FIELDS[lookup_by]
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
        """Create a group; None when a group with that slug already exists.

        The portal answers a duplicate slug with a 400 [doc]; the group list is read back to
        confirm it is there before the 400 is taken as "nothing to do".
        """
        slug = group.get(wire.CUSTOMER_GROUP_SLUG_FIELD)
        return self._create(
            wire.CUSTOMER_GROUPS_PATH,
            dict(group),
            exists=lambda: any(
                isinstance(g, Mapping) and g.get(wire.CUSTOMER_GROUP_SLUG_FIELD) == slug
                for g in self.list_customer_groups()
            ),
        )

    # ---------------------------------------------------------------- price lists (§3)

    def iter_price_lists(self, page_size: int = wire.PRICE_LISTS_PAGE_SIZE_MAX) -> Iterator[dict]:
        _check_page_size(page_size, wire.PRICE_LISTS_PAGE_SIZE_MAX)
        return self._iter_enveloped_pages(wire.PRICE_LISTS_PAGED_PATH, page_size)

    def create_price_list(self, slug: str, name: str, currency_code: str) -> dict | None:
        """Create a price list; None when a list with that slug already exists.

        A duplicate slug is a 400 [doc]; the price lists are read back (page by page, stopping
        at the slug) to confirm it is there before the 400 is taken as "nothing to do".
        """
        return self._create(
            wire.PRICE_LISTS_CREATE_PATH,
            wire.price_list_request(slug, name, currency_code),
            exists=lambda: any(
                isinstance(p, Mapping) and p.get(wire.PRICE_LIST_SLUG_FIELD) == slug
                for p in self.iter_price_lists()
            ),
        )

    def iter_pricing(self, slug: str) -> Iterator[dict]:
        """Every SKU of a price list with its breaks: ``{"sku", "pricing": [...]}``.

        One call: the endpoint is not paged, and answers 204 with no body for an empty list
        [doc]. An unknown list raises NotFoundError (when the iterator is first read).
        """
        body = self._transport.call("GET", wire.PRICING_PATH, {"slug": slug}, shape=LIST_OR_EMPTY)
        yield from wire.list_records(body) or []

    def patch_pricing(self, slug: str, items: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Replace the breaks of the SKUs sent, in one list; ``"pricing": []`` removes a SKU
        (sent as the one blank break the portal takes for "no prices" [doc])."""
        return self._write_batches(
            "PATCH", wire.PRICING_PATH, {"slug": slug}, items, encode=wire.pricing_item
        )

    def batch_update_pricing(self, items: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Like ``patch_pricing`` across lists: each item carries its ``price_list_slug``."""
        return self._write_batches(
            "PATCH", wire.BATCH_UPDATE_PRICING_PATH, None, items, encode=wire.pricing_item
        )

    def fetch_customer_pricing(
        self,
        customer_id: str,
        line_items: Iterable[Mapping[str, Any]],
        lookup_by: str = "sparklayer",
    ) -> list[dict]:
        """What the portal would charge one customer: ``{sku, quantity, unit_price, error}``
        per line sent (``{"sku", "quantity"}``), in the order sent.

        ``unit_price`` is a float, or None with ``error`` saying why when the portal could not
        price the line (it answers 207 then [doc]). Lines go in calls of at most
        ``wire.FETCH_CUSTOMER_PRICING_MAX_LINES``. An unknown customer, or one with no price
        lists, is an InvalidRequestError (400) [doc].
        """
        _check_lookup(lookup_by, wire.CUSTOMER_LOOKUPS)
        lines = [dict(line) for line in line_items]
        rows: list[dict] = []
        for chunk in _chunks(lines, wire.FETCH_CUSTOMER_PRICING_MAX_LINES):
            answer = self._transport.call(
                "POST",
                wire.FETCH_CUSTOMER_PRICING_PATH,
                body=wire.fetch_customer_pricing_request(customer_id, lookup_by, chunk),
                shape=OBJECT,
            )
            rows.extend(_priced_lines(chunk, answer.get(wire.PRICED_LINES_FIELD)))
        return rows

    # ---------------------------------------------------------------- stock (§4)

    def list_stock_locations(self) -> list[dict]:
        return (
            wire.list_records(self._transport.call("GET", wire.STOCK_LOCATIONS_PATH, shape=LIST))
            or []
        )

    def create_stock_location(self, name: str, external_id: str) -> dict | None:
        """Create a stock location; None when one with that external_id already exists (409
        [doc], confirmed by reading the locations back)."""
        return self._create(
            wire.STOCK_LOCATIONS_PATH,
            wire.stock_location_request(name, external_id),
            exists=lambda: any(
                isinstance(loc, Mapping)
                and loc.get(wire.STOCK_LOCATION_EXTERNAL_ID_FIELD) == external_id
                for loc in self.list_stock_locations()
            ),
        )

    def batch_update_stock(self, rows: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Overwrite the stock level of each sku × location sent (the portal answers 204)."""
        return self._write_batches("POST", wire.BATCH_UPDATE_STOCK_PATH, None, rows)

    def batch_fetch_stock(
        self, skus: Iterable[str], all_stock_locations: bool = True
    ) -> list[dict]:
        """Stock levels of ``skus``, one flat row per SKU and location: ``{sku,
        stock_location_id, stock_location_external_id, stock_level, restock_date,
        min_stock_level}``. The portal nests each SKU's levels in ``stock_levels`` [doc]; flat
        rows keep the callers independent of that. SKUs with no level are left out.
        Without ``all_stock_locations`` the portal answers for the ``default`` location only.
        """
        levels: list[dict] = []
        for chunk in _chunks(list(skus), wire.BATCH_FETCH_STOCK_MAX_SKUS):
            body = self._transport.call(
                "POST",
                wire.BATCH_FETCH_STOCK_PATH,
                body=wire.batch_fetch_stock_request(chunk, all_stock_locations),
                shape=LIST,
            )
            for entry in wire.list_records(body) or []:
                levels.extend(wire.flat_stock_rows(entry))
        return levels

    # ---------------------------------------------------------------- purchases (§5)

    def iter_purchases(
        self,
        *,
        updated_gte: datetime | None = None,
        updated_lte: datetime | None = None,
        purchase_type: str | None = None,
        customer_id: str | None = None,
        limit: int = wire.PURCHASES_LIMIT_MAX,
    ) -> Iterator[dict]:
        """Purchases changed inside ``[updated_gte, updated_lte]`` (of one ``purchase_type``
        and ``customer_id`` when given), newest first as the portal lists them, each id once.

        Why this is more than "follow the offsets": the list is **newest first** and pages are
        **offsets** into it, while buyers keep placing and changing purchases (each one moves
        to the head) and some are deleted. Every arrival above the reader shifts the entries
        not yet read one place down, every deletion one place up; a plain ``offset += limit``
        would then re-read some purchases and, worse, silently skip others. So:

        - consecutive pages **overlap** (the next offset is ``offset + limit - overlap``);
        - **contiguity is checked** with an anchor, the oldest purchase read so far: it must
          reappear in the next page, or (if it was deleted or changed since) that page must
          start at or above its place in the order (``dates.updated_at``, then id). If not,
          entries shifted up past the reader: it **steps back** (further each time, bounded by
          ``PURCHASE_STEP_BACKS_MAX``) and reads again;
        - each purchase id is yielded **once** per call (the first version read), whatever
          the re-reads; an entry that is not a JSON object is yielded as it is, once per
          distinct content, for the domain to queue as malformed (it never stops the walk);
        - after a walk of several pages the **head is re-read** down to where the walk began,
          for purchases placed or changed meanwhile (bounded; later ones are the next poll's);
        - the window is **re-filtered here** (a server that ignores the filters gives the same
          result, only slower), and the walk **stops early** at a page whose last two entries
          are older than ``updated_gte`` (one entry out of order cannot stop it).

        Each page is fetched only when the caller has consumed the previous one.
        """
        _check_page_size(limit, wire.PURCHASES_LIMIT_MAX)
        if limit < 2:
            raise ValueError("limit must be at least 2: purchase pages overlap by one entry")
        window = PurchaseWindow(
            updated_gte=_utc(updated_gte),
            updated_lte=_utc(updated_lte),
            purchase_type=purchase_type,
            customer_id=customer_id,
        )

        def fetch(offset: int) -> list[Any]:
            return self._transport.call(
                "GET",
                wire.PURCHASES_PATH,
                params={**window.params(), wire.LIMIT_PARAM: limit, wire.OFFSET_PARAM: offset},
                shape=ARRAY,
            )

        return _PurchaseReader(fetch, limit, window).read()

    def get_purchase(self, identifier: str, lookup_by: str = "sparklayer") -> dict | None:
        _check_lookup(lookup_by, wire.PURCHASE_LOOKUPS)
        return self._get_or_none(
            wire.PURCHASE_PATH, {"lookup_by": lookup_by, "identifier": identifier}
        )

    def put_purchase(self, purchase: Mapping[str, Any], lookup_by: str = "sparklayer") -> dict:
        """Create or fully replace a purchase, addressed by one of its ``purchase_identifiers``.

        The portal creates a purchase when nothing matches [doc], so the identifier must be the
        purchase's own. The server's ``calculated_*`` fields are left out of the body (the
        portal takes none); everything else is sent as given. 400 (a required field missing),
        403 (the SparkLayer id would change) and 409 (a conflicting ``revision_date``) raise.
        """
        _check_lookup(lookup_by, wire.PURCHASE_LOOKUPS)
        identifiers = purchase.get(wire.PURCHASE_IDENTIFIERS_FIELD)
        identifier = identifiers.get(lookup_by) if isinstance(identifiers, Mapping) else None
        if not identifier:
            raise ValueError(
                f"a purchase put by {lookup_by} needs purchase_identifiers.{lookup_by}"
            )
        body = {k: v for k, v in purchase.items() if not str(k).startswith(CALCULATED_PREFIX)}
        return self._transport.call(
            "PUT",
            wire.PURCHASE_PATH,
            {"lookup_by": lookup_by, "identifier": identifier},
            body=body,
            retry_conflicts=False,
        )

    def set_internal_identifier(self, purchase_id: str, internal: str) -> dict:
        """Write the ERP order number into ``purchase_identifiers.internal`` (contract §5).

        Read by SparkLayer id, change only that field, and PUT the purchase back as just read
        (``write_back_body``: type, packages, custom fields... unchanged, ``calculated_*`` left
        out) to ``/purchases/sparklayer/{id}``, never by ``internal``, where a miss would
        create a purchase. Sending what was just read, with its ``revision_date``, is what keeps
        a buyer's edit from being overwritten: a 409 means the purchase changed in between, so
        it is read again and the change redone (at most ``CONFLICT_REREADS`` times, then a
        ConflictError), never resent stale. 400, 403 and a 409 saying another purchase already
        carries the number (``already_exists``) raise at once: the same body would be refused
        again. Writing the number it already has makes no PUT. Returns the purchase as
        the portal answered.
        """
        path_params = {"lookup_by": "sparklayer", "identifier": purchase_id}
        clash: ConflictError | None = None
        for _ in range(CONFLICT_REREADS + 1):
            purchase = self._transport.call("GET", wire.PURCHASE_PATH, path_params)
            if internal_id(purchase) == internal:
                return purchase
            try:
                return self._transport.call(
                    "PUT",
                    wire.PURCHASE_PATH,
                    path_params,
                    body=write_back_body(purchase, internal),
                    retry_conflicts=False,
                )
            except ConflictError as conflict:
                if conflict.already_exists:
                    # Not a concurrent edit: another purchase carries this ERP number. The
                    # same write would clash again; a person must look at the two orders.
                    raise
                clash = conflict
                logger.info(
                    "SparkLayer purchase %s changed while its ERP number was written (409); "
                    "reading it again",
                    purchase_id,
                )
        gave_up = ConflictError(
            409,
            "purchase kept changing",
            f"purchase {purchase_id} changed under each of {CONFLICT_REREADS + 1} attempts to "
            f"write ERP order number {internal}; the next run tries again",
            clash.problems if clash else (),
            method="PUT",
            endpoint=wire.PURCHASE_PATH,
        )
        gave_up.retryable = False
        raise gave_up

    def list_purchase_transactions(self, purchase_id: str) -> list[dict]:
        """The payments recorded on a purchase, as the portal lists them (their shape is read
        by ``purchases.applied_total``)."""
        body = self._transport.call(
            "GET",
            wire.PURCHASE_TRANSACTIONS_PATH,
            {"lookup_by": "sparklayer", "identifier": purchase_id},
            shape=LIST,
        )
        return wire.list_records(body) or []

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

    def _create(
        self, endpoint: str, body: dict[str, Any], *, exists: Callable[[], bool]
    ) -> dict | None:
        """POST a new resource; None when the portal says it already exists and reading it
        back confirms so. Any other refusal, or a refusal not confirmed, raises: a create is
        never resent blindly."""
        try:
            created = self._transport.call("POST", endpoint, body=body, shape=ANYTHING)
        except (ConflictError, InvalidRequestError) as refused:
            if not refused.already_exists or not exists():
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

    def _write_batches(
        self,
        method: str,
        endpoint: str,
        path_params: Mapping[str, str] | None,
        items: Iterable[Mapping[str, Any]],
        encode: Callable[[Mapping[str, Any]], dict[str, Any]] = dict,
    ) -> BatchResult:
        """Send ``items`` (each as ``encode`` puts it on the wire) in calls of at most
        ``BATCH_MAX_ITEMS``; the portal may answer 200 or 204.

        A batch the portal refuses naming rows is resent once without them; the named rows come
        back in ``rejected`` (as the caller gave them) with the portal's reason. Any other
        failure propagates: batches already sent stay applied, and every write here is safe to
        repeat on the next run.
        """
        calls = sent = 0
        rejected: list[RejectedRow] = []
        for batch in _chunks([dict(item) for item in items], wire.BATCH_MAX_ITEMS):
            try:
                self._transport.call(
                    method, endpoint, path_params, body=[encode(r) for r in batch], shape=ANYTHING
                )
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
                    resent, refused_again = self._resend_once(
                        method, endpoint, path_params, rest, encode
                    )
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
        encode: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> tuple[int, list[RejectedRow]]:
        """Resend the rows the portal did not object to; if it refuses again, report them all."""
        try:
            self._transport.call(
                method, endpoint, path_params, body=[encode(r) for r in rows], shape=ANYTHING
            )
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


def _priced_lines(sent: list[dict[str, Any]], answered: Any) -> list[dict[str, Any]]:
    """The portal's answer to one fetch-customer-pricing call, as one row per line sent.

    Answers are matched to the lines by SKU and quantity (the same SKU may be asked at several
    quantities, one per price break); a line the portal did not answer for gets an error.
    """
    by_line: dict[tuple[Any, float | None], deque[Mapping[str, Any]]] = {}
    for answer in answered if isinstance(answered, list) else []:
        if isinstance(answer, Mapping):
            key = (answer.get(wire.PRICED_SKU_FIELD), _quantity(answer))
            by_line.setdefault(key, deque()).append(answer)
    rows = []
    for line in sent:
        sku = line.get(wire.PRICED_SKU_FIELD)
        quantity = line.get(wire.PRICED_QUANTITY_FIELD)
        matches = by_line.get((sku, _quantity(line)))
        answer = matches.popleft() if matches else None
        if answer is None:
            rows.append(_priced_row(sku, quantity, None, "the portal did not answer for this line"))
            continue
        price = wire.money_amount(answer.get(wire.PRICED_UNIT_PRICE_FIELD))
        error = answer.get(wire.PRICED_ERROR_FIELD)
        if error in (None, "") and price is None:
            error = "the portal gave no unit price"
        rows.append(_priced_row(sku, quantity, price, str(error) if error else None))
    return rows


def _priced_row(sku: Any, quantity: Any, price: float | None, error: str | None) -> dict:
    return {"sku": sku, "quantity": quantity, "unit_price": price, "error": error}


def _quantity(line: Mapping[str, Any]) -> float | None:
    try:
        return float(line.get(wire.PRICED_QUANTITY_FIELD))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------ reading the purchase list

# Where a purchase sits in the portal's order: newest ``dates.updated_at`` first, then id.
PurchaseKey = tuple[pd.Timestamp, str]


def _utc(moment: datetime | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _key(raw: Any) -> PurchaseKey | None:
    """The sort key of a list entry, or None for one with no readable id or time."""
    pid, updated = purchase_id(raw), purchase_updated_at(raw)
    return None if pid is None or updated is None else (updated, pid)


@dataclass(frozen=True)
class PurchaseWindow:
    """What ``iter_purchases`` asks for: sent as the list filters and applied again here."""

    updated_gte: pd.Timestamp | None = None
    updated_lte: pd.Timestamp | None = None
    purchase_type: str | None = None
    customer_id: str | None = None

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.updated_gte is not None:
            params[wire.UPDATED_GTE_PARAM] = wire.timestamp(self.updated_gte.to_pydatetime())
        if self.updated_lte is not None:
            params[wire.UPDATED_LTE_PARAM] = wire.timestamp(self.updated_lte.to_pydatetime())
        if self.purchase_type is not None:
            params[wire.PURCHASE_TYPE_PARAM] = self.purchase_type
        if self.customer_id is not None:
            params[wire.PURCHASE_CUSTOMER_PARAM] = self.customer_id
        return params

    def holds(self, raw: Any) -> bool:
        """Whether an entry belongs in the window. What cannot be read (not an object, no time,
        no type) is kept: the domain queues it as malformed rather than it vanishing here."""
        if not isinstance(raw, Mapping):
            return True
        updated = purchase_updated_at(raw)
        if updated is not None:
            if self.updated_gte is not None and updated < self.updated_gte:
                return False
            if self.updated_lte is not None and updated > self.updated_lte:
                return False
        kind = purchase_type(raw)
        if self.purchase_type is not None and kind is not None and kind != self.purchase_type:
            return False
        buyer = customer_id(raw)
        return self.customer_id is None or buyer is None or buyer == self.customer_id

    def older_than_window(self, key: PurchaseKey) -> bool:
        return self.updated_gte is not None and key[0] < self.updated_gte

    def page_ends_past_window(self, keys: list[PurchaseKey]) -> bool:
        """Whether a newest-first page (its readable keys in page order) has gone below the
        window, so that no page further down can hold a purchase inside it.

        Judged by the page's last two entries, not its oldest one: one entry whose time is out
        of the list's order (a damaged or hand-edited purchase, 10,000 hostile purchases in the
        reliability suite) used to end the walk early, and every purchase further down the
        window was never read, by that run or any later one.
        """
        tail = keys[-2:]
        return bool(tail) and all(self.older_than_window(key) for key in tail)


@dataclass
class _Walk:
    """How one walk down the list went: the newest entry of its first page, pages read."""

    head: PurchaseKey | None = None
    pages: int = 0


class _PurchaseReader:
    """One ``iter_purchases`` call: walks the newest-first list (see its docstring)."""

    def __init__(self, fetch: Callable[[int], list[Any]], limit: int, window: PurchaseWindow):
        self._fetch = fetch
        self._limit = limit
        self._overlap = max(1, limit // PURCHASE_PAGE_OVERLAP_SHARE)
        self._window = window
        self._seen_ids: set[str] = set()
        self._seen_contents: set[str] = set()
        self._step_backs = 0

    def read(self) -> Iterator[Any]:
        walk = yield from self._walk(floor=None)
        # A walk of one page read the list in one go: nothing can have slipped past it. After a
        # longer walk, purchases placed or changed while it paged sit above where it began.
        for _ in range(PURCHASE_HEAD_REREADS_MAX):
            if walk.pages <= 1 or walk.head is None:
                return
            walk = yield from self._walk(floor=walk.head)

    def _first_time(self, raw: Any) -> bool:
        pid = purchase_id(raw)
        if pid is not None:
            seen, token = self._seen_ids, pid
        else:
            seen, token = self._seen_contents, json.dumps(raw, sort_keys=True, default=str)
        if token in seen:
            return False
        seen.add(token)
        return True

    def _walk(self, floor: PurchaseKey | None) -> Generator[Any, None, _Walk]:
        """Page down from the head; with ``floor``, only until entries at or below it (already
        read by the previous walk). Returns a ``_Walk`` (through ``yield from``)."""
        walk = _Walk()
        offset = 0
        anchor: PurchaseKey | None = None  # the oldest entry read so far
        misses = 0  # consecutive pages that did not join up with the anchor
        while True:
            page = self._fetch(offset)
            walk.pages += 1
            keys = [key for key in map(_key, page) if key is not None]
            if offset == 0 and walk.head is None:
                walk.head = max(keys, default=None)
            if offset > 0 and not _joins(page, keys, anchor):
                misses += 1
                offset = max(0, offset - (self._limit - self._overlap) * 2 ** (misses - 1))
                self._count_step_back(offset)
                continue
            misses = 0
            for raw in page:
                if self._window.holds(raw) and self._first_time(raw):
                    yield raw
            if keys:
                oldest = min(keys)
                anchor = oldest if anchor is None else min(anchor, oldest)
            if len(page) < self._limit:
                return walk  # the last page
            if self._window.page_ends_past_window(keys):
                return walk  # newest first: everything further down is older still
            if floor is not None and keys and min(keys) <= floor:
                return walk  # back where the previous walk began
            offset += len(page) - self._overlap

    def _count_step_back(self, offset: int) -> None:
        self._step_backs += 1
        logger.info(
            "SparkLayer purchase list shifted while it was read; stepping back to offset %d",
            offset,
        )
        if self._step_backs > PURCHASE_STEP_BACKS_MAX:
            raise SparkLayerError(
                None,
                "purchase list kept shifting",
                f"purchases were deleted faster than they could be read (more than "
                f"{PURCHASE_STEP_BACKS_MAX} re-reads); the next run reads the list again",
                method="GET",
                endpoint=wire.PURCHASES_PATH,
            )


def _joins(page: list[Any], keys: list[PurchaseKey], anchor: PurchaseKey | None) -> bool:
    """Whether ``page`` carries on from what was read, leaving no gap above it.

    The anchor (the oldest purchase read so far) reappearing in the page proves it; if the
    anchor has since been deleted or changed (moved to the head), the page must start at or
    above the anchor's old place in the order. An empty page past the head means the list
    shrank under the reader. A page with nothing readable in it cannot be checked: taken as is.
    """
    if not page:
        return False
    if anchor is None or not keys:
        return True
    if any(pid == anchor[1] for _, pid in keys):
        return True
    return keys[0] >= anchor
