"""One SparkLayer API call, done properly: paced, authenticated, retried, typed.

:class:`Transport` is what ``SparkLayerClient`` sends every request through; the client adds
the endpoints, paging and batching on top. Here live the transport rules of the contract (§1):

- **Authentication**: a client-credentials token, cached and renewed shortly before it expires;
  on a 401 it is renewed once and the call resent; a second 401 is an ``AuthenticationError``.
  The cache is thread-safe (Dagster may share a client between threads) and fetches one token
  at a time.
- **Pacing**: a pyrate-limiter token bucket shared by every client of the same portal site in
  the process (``pacing.py``), plus honouring ``Retry-After`` on 429.
- **Retries** with tenacity: 5xx, 429, 409 conflicts, connection failures, timeouts and
  malformed 2xx bodies, with exponential backoff and jitter, bounded by ``max_attempts``; never
  any other 4xx. urllib3's ``Retry`` is not used because it decides on the status line alone: it
  cannot renew the token on a 401, cannot retry a 2xx whose body is not JSON, cannot raise our
  typed errors, and cannot log each retry with the path template.
- **Errors**: RFC 7807 problem documents (or no body at all) become typed exceptions.
- **The address** is checked when the transport is made (scheme http or https, a host, a
  numeric port, no spaces) but refused only by the first call, as a ``PortalConfigurationError``
  in one line: requests would otherwise raise ``InvalidURL``/``InvalidSchema`` from deep inside
  the first call (a 40-line traceback), and a Dagster resource that failed while starting would
  fail the whole run before any step, with no step failure saying why.
- **Accounting**: ``ClientStats`` says how many calls and retries were made and how long was
  spent waiting on rate limits, so benchmarks can report it.

Secrets: the client secret and tokens are never put in a message, a log line or a repr.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import metadata
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pyrate_limiter import Limiter
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from b2b_pipeline.connectors.sparklayer import wire
from b2b_pipeline.connectors.sparklayer.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PortalConfigurationError,
    PortalUnreachableError,
    Problem,
    RateLimitedError,
    ServerError,
    SparkLayerError,
)
from b2b_pipeline.connectors.sparklayer.pacing import shared_limiter, wait_for_turn

logger = logging.getLogger(__name__)


def parse_json(content: bytes) -> Any:
    """A response body as JSON, always with the standard library's parser.

    Not ``Response.json()``: that uses simplejson whenever it happens to be installed (another
    package may bring it in), which refuses the ``NaN`` and ``Infinity`` a portal page can carry
    in one bad entry and would make the whole page unreadable, so one hostile purchase would
    stop every order. The stdlib parser reads them as floats; the order rules then queue that
    entry as malformed, with its payload, and the rest of the page goes on.
    """
    return json.loads(content)


# A token is renewed this long before the portal says it expires (or a tenth of its lifetime,
# when that is shorter), so that a call never leaves with a token about to lapse in flight.
TOKEN_RENEWAL_MARGIN_SECONDS = 60.0
# Used when the token response omits ``expires_in``: short, so a wrong guess costs little.
TOKEN_TTL_FALLBACK_SECONDS = 300.0
# Retry-After is honoured as sent, up to this: a misconfigured proxy asking for an hour must not
# park a Dagster run; the wait counts towards max_attempts like any retry.
RETRY_AFTER_CAP_SECONDS = 60.0
# First backoff step (doubling each retry, plus up to this much random jitter, capped at
# backoff_max): spreads the retries of concurrent workers instead of synchronising them.
BACKOFF_INITIAL_SECONDS = 0.5
# Connecting to a healthy portal takes milliseconds; a host that is down should fail fast even
# when reads of big pages are allowed the full timeout.
CONNECT_TIMEOUT_MAX_SECONDS = 10.0

_TRANSPORT_FAILURES = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

_ERROR_BY_STATUS: dict[int, type[SparkLayerError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


def masked_address(base_url: str) -> str:
    """The portal address for messages: a password in its user info replaced by ***."""
    text = " ".join(str(base_url).split())[:200]
    scheme, separator, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    if separator and "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        text = f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"
    return text


def address_problem(base_url: str) -> str | None:
    """What makes ``base_url`` unusable as the portal's API address, or None if it is usable.

    The answer completes "SPARKLAYER_BASE_URL '...' ...", and never quotes the address itself.
    """
    if not base_url.strip():
        return "is empty"
    if any(ch.isspace() or not ch.isprintable() for ch in base_url):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(base_url)
        port = parts.port  # ValueError when not a number from 0 to 65535
    except ValueError:
        return "is not a URL (its host or port cannot be read)"
    if parts.scheme not in ("http", "https"):
        if not parts.scheme or not parts.netloc:
            return "is not a URL: it has no http:// or https:// scheme"
        return f"uses {parts.scheme}://, but the SparkLayer API is served over http(s)://"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "names port 0"
    if parts.query or parts.fragment:
        return "has a query or fragment; give the API's base address only"
    try:  # whatever else requests itself would refuse on the first call
        requests.Request("GET", base_url.rstrip("/") + wire.TOKEN_PATH).prepare()
    except requests.RequestException:
        return "is not a URL the HTTP client accepts"
    return None


def _package_version() -> str:
    try:
        return metadata.version("b2b-pipeline")
    except metadata.PackageNotFoundError:  # running from a source checkout
        return "dev"


def default_user_agent() -> str:
    return f"b2b-pipeline/{_package_version()} (+SparkLayer integration)"


@dataclass(frozen=True)
class ClientStats:
    """What one client spent its time on, since it was made (or since ``reset_stats``)."""

    calls: int = 0  # HTTP requests sent, token requests and retries included
    retries: int = 0
    token_fetches: int = 0
    limiter_wait_seconds: float = 0.0  # blocked by the client-side pacing
    retry_after_wait_seconds: float = 0.0  # sleeping as a 429's Retry-After asked
    backoff_wait_seconds: float = 0.0  # sleeping between retries of other failures

    @property
    def rate_limit_wait_seconds(self) -> float:
        """Time lost to rate limiting, ours and the portal's."""
        return self.limiter_wait_seconds + self.retry_after_wait_seconds


class _StatsRecorder:
    """Thread-safe counters behind ``SparkLayerClient.stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = ClientStats()

    def add(self, **increments: float) -> None:
        with self._lock:
            current = self._totals
            self._totals = ClientStats(
                **{
                    name: getattr(current, name) + increments.get(name, 0)
                    for name in ClientStats.__dataclass_fields__
                }
            )

    def snapshot(self) -> ClientStats:
        with self._lock:
            return self._totals

    def reset(self) -> None:
        with self._lock:
            self._totals = ClientStats()


class _TokenCache:
    """The current access token, renewed before expiry; one fetch at a time across threads."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def current(self) -> str:
        # Holding the lock while fetching is deliberate: threads that find the token stale
        # wait for the one fetch instead of each asking the portal for a token.
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                token, ttl = self._fetch()
                margin = min(TOKEN_RENEWAL_MARGIN_SECONDS, ttl / 10)
                self._token, self._renew_at = token, time.monotonic() + ttl - margin
            return self._token

    def discard(self, token: str) -> None:
        """Forget ``token`` after a 401, unless another thread already replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def is_issued(self, text: str) -> bool:
        return self._token is not None and self._token in text


@dataclass(frozen=True)
class Shape:
    """What a 2xx body must look like; anything else is a MalformedResponseError."""

    description: str
    accepts: Callable[[Any], bool]
    empty_ok: bool = False


OBJECT = Shape("a JSON object", lambda body: isinstance(body, dict))
ARRAY = Shape("a JSON array", lambda body: isinstance(body, list))
PAGE = Shape("a page {data, pagination}", lambda body: wire.page_records(body) is not None)
LIST = Shape("a JSON array of records", lambda body: wire.list_records(body) is not None)
# An unpaged list that answers 204 with no body when it is empty (pricing [doc]).
LIST_OR_EMPTY = Shape(
    "a JSON array of records, or no body",
    lambda body: wire.list_records(body) is not None,
    empty_ok=True,
)
ANYTHING = Shape("JSON or nothing", lambda body: True, empty_ok=True)

NO_BODY = object()


def _json_default(value: Any) -> Any:
    """Encode the scalar types pandas and the ERP hand over (numpy, Decimal, dates)."""
    if isinstance(value, datetime):
        return wire.timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode(body: Any) -> bytes:
    # allow_nan=False: a NaN price must fail here, loudly, not reach the portal as invalid JSON.
    return json.dumps(body, default=_json_default, allow_nan=False).encode()


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds [doc], or an HTTP date (RFC 9110) to be safe."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _problems(rows: Any) -> list[Problem]:
    if not isinstance(rows, list):
        return []
    problems = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        field_name = next((row[key] for key in wire.PROBLEM_ROW_FIELD_KEYS if row.get(key)), None)
        line = row.get(wire.PROBLEM_ROW_LINE)
        problems.append(
            Problem(
                code=str(row[wire.PROBLEM_ROW_CODE]) if row.get(wire.PROBLEM_ROW_CODE) else None,
                message=str(row.get(wire.PROBLEM_ROW_MESSAGE) or ""),
                field=str(field_name) if field_name is not None else None,
                line=(
                    line - wire.PROBLEM_ROW_LINE_BASE
                    if isinstance(line, int) and not isinstance(line, bool)
                    else None
                ),
            )
        )
    return problems


def describe(error: BaseException | None, endpoint: str | None = None) -> str:
    """A short account of one failed attempt, for retry logs and give-up messages.

    Names the endpoint when it is not the call's own: a token request made on the call's
    behalf can be what failed.
    """
    if not isinstance(error, SparkLayerError):
        return type(error).__name__
    if isinstance(error, PortalUnreachableError):
        text = error.detail or error.title
    else:
        text = f"{error.status} {error.title}" if error.status is not None else error.title
    if error.endpoint and endpoint and error.endpoint != endpoint:
        text += f" from {error.method} {error.endpoint}"
    return text


class Transport:
    """Sends calls to one portal site; see the module docstring for the rules it applies."""

    def __init__(
        self,
        base_url: str,
        site_id: str,
        client_id: str,
        client_secret: str,
        *,
        requests_per_second: float,
        timeout: float,
        max_attempts: int,
        backoff_max: float,
        user_agent: str | None,
        burst: int | None,
        limiter: Limiter | None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        # Checked now, refused on the first call (see the module docstring).
        self._address_problem = address_problem(base_url)
        self.base_url = base_url.rstrip("/")
        self.site_id = site_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = (min(timeout, CONNECT_TIMEOUT_MAX_SECONDS), timeout)
        self._max_attempts = max_attempts
        self._backoff = wait_exponential_jitter(
            multiplier=BACKOFF_INITIAL_SECONDS, max=backoff_max, jitter=BACKOFF_INITIAL_SECONDS
        )
        self._limiter = limiter or shared_limiter(
            self.base_url, site_id, requests_per_second, burst
        )
        self._session = requests.Session()
        self._session.headers.update(
            {
                wire.SITE_HEADER: site_id,
                "Accept": wire.JSON_MEDIA_TYPE,
                "User-Agent": user_agent or default_user_agent(),
            }
        )
        self._tokens = _TokenCache(self._fetch_token)
        self._stats = _StatsRecorder()

    def __repr__(self) -> str:
        return f"Transport(base_url={masked_address(self.base_url)!r}, site_id={self.site_id!r})"

    def close(self) -> None:
        self._session.close()

    @property
    def stats(self) -> ClientStats:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def call(
        self,
        method: str,
        endpoint: str,
        path_params: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = NO_BODY,
        shape: Shape = OBJECT,
        retry_conflicts: bool = True,
    ) -> Any:
        """One API call: paced, authenticated, retried; returns the parsed 2xx body."""
        path = endpoint
        if path_params:
            path = endpoint.format(
                **{name: quote(str(value), safe="") for name, value in path_params.items()}
            )
        payload = None if body is NO_BODY else _encode(body)

        def retryable(error: BaseException) -> bool:
            if isinstance(error, ConflictError) and not retry_conflicts:
                return False
            return isinstance(error, SparkLayerError) and error.retryable

        return self.with_retries(
            method,
            endpoint,
            lambda: self._attempt(method, endpoint, path, params, payload, shape),
            retry_on=retryable,
            attempts=self._max_attempts,
        )

    def with_retries(
        self,
        method: str,
        endpoint: str,
        attempt: Callable[[], Any],
        *,
        retry_on: Callable[[BaseException], bool],
        attempts: int,
    ) -> Any:
        """Run ``attempt`` until it succeeds, raises what ``retry_on`` rejects, or ``attempts``
        are spent (then a PortalUnreachableError saying what was tried)."""
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait_before_retry,
            retry=retry_if_exception(retry_on),
            before_sleep=lambda state: self._before_retry(method, endpoint, attempts, state),
            reraise=False,
        )
        try:
            return retrying(attempt)
        except RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            tries = exhausted.last_attempt.attempt_number
            raise self._gave_up(method, endpoint, tries, last, time.monotonic() - started) from (
                last
            )

    def _wait_before_retry(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_CAP_SECONDS)
        return self._backoff(state)

    def _before_retry(
        self, method: str, endpoint: str, attempts: int, state: RetryCallState
    ) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        honoured_retry_after = isinstance(error, RateLimitedError) and error.retry_after is not None
        self._stats.add(
            retries=1,
            retry_after_wait_seconds=delay if honoured_retry_after else 0.0,
            backoff_wait_seconds=0.0 if honoured_retry_after else delay,
        )
        logger.warning(
            "SparkLayer %s %s failed on attempt %d of %d (%s); retrying in %.2f s%s",
            method,
            endpoint,
            state.attempt_number,
            attempts,
            describe(error, endpoint),
            delay,
            " as the portal asked (Retry-After)" if honoured_retry_after else "",
        )

    def _gave_up(
        self,
        method: str,
        endpoint: str,
        attempts: int,
        last: BaseException | None,
        elapsed: float,
    ) -> PortalUnreachableError:
        last_error = last if isinstance(last, SparkLayerError) else None
        return PortalUnreachableError(
            last_error.status if last_error else None,
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s",
            f"last: {describe(last, endpoint)}. The portal is unavailable, overloaded or kept "
            "refusing the change; the next run retries by itself",
            last_error.problems if last_error else (),
            method=method,
            endpoint=endpoint,
            attempts=attempts,
            last_error=last_error,
        )

    def _attempt(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | None,
        payload: bytes | None,
        shape: Shape,
    ) -> Any:
        token = self._tokens.current()
        response = self._send(method, endpoint, path, params, payload, token)
        if response.status_code == 401:
            # Tokens can be revoked before their expiry: renew once and resend [doc].
            logger.info("SparkLayer %s %s: token refused (401), renewing it", method, endpoint)
            self._tokens.discard(token)
            token = self._tokens.current()
            response = self._send(method, endpoint, path, params, payload, token)
            if response.status_code == 401:
                raise AuthenticationError(
                    401,
                    "access token refused",
                    f"the portal refused a freshly issued token for site {self.site_id!r}: the "
                    "API key may have been revoked or lack access to this endpoint. Check the "
                    "key in SparkLayer and SPARKLAYER_CLIENT_ID/SPARKLAYER_CLIENT_SECRET",
                    method=method,
                    endpoint=endpoint,
                )
        return self._read(response, method, endpoint, shape)

    def _send(
        self,
        method: str,
        endpoint: str,
        path: str,
        params: Mapping[str, Any] | None,
        payload: bytes | None,
        token: str | None,
    ) -> requests.Response:
        if self._address_problem is not None:
            raise PortalConfigurationError(masked_address(self.base_url), self._address_problem)
        self._stats.add(limiter_wait_seconds=wait_for_turn(self._limiter))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if payload is not None:
            headers["Content-Type"] = wire.JSON_MEDIA_TYPE
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                data=payload,
                headers=headers,
                timeout=self._timeout,
            )
        except _TRANSPORT_FAILURES as failure:
            self._stats.add(calls=1)
            raise PortalUnreachableError(
                None,
                "no response",
                f"{type(failure).__name__} talking to {masked_address(self.base_url)}",
                method=method,
                endpoint=endpoint,
                retryable=True,
            ) from None  # requests' own text can be long; the type and host say enough
        self._stats.add(calls=1)
        logger.debug(
            "SparkLayer %s %s -> %d in %.0f ms",
            method,
            endpoint,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _read(self, response: requests.Response, method: str, endpoint: str, shape: Shape) -> Any:
        if not 200 <= response.status_code < 300:
            raise self._error_from(response, method, endpoint)
        if not response.content.strip():
            if shape.empty_ok:
                return None
            raise MalformedResponseError(
                response.status_code,
                "empty response body",
                f"expected {shape.description}",
                method=method,
                endpoint=endpoint,
            )
        try:
            body = parse_json(response.content)
        except ValueError:
            body = NO_BODY
        if body is NO_BODY or not shape.accepts(body):
            kind = "not JSON" if body is NO_BODY else f"JSON {type(body).__name__}"
            raise MalformedResponseError(
                response.status_code,
                "response body is not the JSON promised",
                f"expected {shape.description}, got {kind} "
                f"({response.headers.get('Content-Type', 'no content type')}, "
                f"{len(response.content)} bytes)",
                method=method,
                endpoint=endpoint,
            )
        return body

    def _error_from(
        self, response: requests.Response, method: str, endpoint: str
    ) -> SparkLayerError:
        """The typed error for a non-2xx response, from its problem document if it has one."""
        status = response.status_code
        try:
            document = parse_json(response.content) if response.content.strip() else None
        except ValueError:
            document = None  # some error responses have no body, or an HTML one [doc]
        title = detail = None
        if isinstance(document, dict):
            title = document.get(wire.PROBLEM_TITLE)
            detail = document.get(wire.PROBLEM_DETAIL)
            rows = document.get(wire.PROBLEM_ROWS)
        else:
            rows = document  # a batch endpoint may answer with the bare row list
        problems = [
            Problem(p.code, self._redact(p.message), p.field, p.line) for p in _problems(rows)
        ]
        error_type = _ERROR_BY_STATUS.get(status) or (
            ServerError if status >= 500 else SparkLayerError
        )
        arguments = (
            status,
            self._redact(str(title or response.reason or "HTTP error")),
            self._redact(str(detail)) if detail else None,
            problems,
        )
        if error_type is RateLimitedError:
            return RateLimitedError(
                *arguments,
                method=method,
                endpoint=endpoint,
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
        return error_type(*arguments, method=method, endpoint=endpoint)

    def _redact(self, text: str) -> str:
        """Server text quoted in our messages must not carry the secret or our token back."""
        if self._client_secret and self._client_secret in text:
            text = text.replace(self._client_secret, "[redacted]")
        if self._tokens.is_issued(text):
            text = "[redacted server text]"
        return text

    def _fetch_token(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds (called by the token cache)."""
        self._stats.add(token_fetches=1)
        response = self._send(
            "POST",
            wire.TOKEN_PATH,
            wire.TOKEN_PATH,
            None,
            _encode(wire.token_request(self._client_id, self._client_secret)),
            None,
        )
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(
                response.status_code,
                "client credentials refused",
                f"SparkLayer refused the client credentials for site {self.site_id!r} "
                f"(client id {self._client_id!r}). Check SPARKLAYER_CLIENT_ID and "
                "SPARKLAYER_CLIENT_SECRET, and that the key belongs to this site and "
                "environment (live or test)",
                method="POST",
                endpoint=wire.TOKEN_PATH,
            )
        body = self._read(response, "POST", wire.TOKEN_PATH, OBJECT)
        token = body.get(wire.TOKEN_FIELD)
        if not isinstance(token, str) or not token:
            raise MalformedResponseError(
                response.status_code,
                "token response without an access token",
                f"expected {wire.TOKEN_FIELD!r} in the body",
                method="POST",
                endpoint=wire.TOKEN_PATH,
            )
        ttl = body.get(wire.TOKEN_TTL_FIELD)
        valid_ttl = isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0
        return token, float(ttl) if valid_ttl else TOKEN_TTL_FALLBACK_SECONDS
