"""Typed errors of the SparkLayer client.

Every failure of a portal call surfaces as one :class:`SparkLayerError` subclass carrying the
HTTP status and the RFC 7807 problem document (``title``, ``detail`` and the row ``problems``),
so callers branch on the type instead of parsing text. ``retryable`` says whether the client's
own retry loop resends the call; callers never need to retry these themselves.

No message built here contains the client secret or a token: the client never passes them in,
and it scrubs them from any server text it quotes (``client._Redactor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from b2b_pipeline.connectors.sparklayer.wire import ALREADY_EXISTS_CODE, ALREADY_EXISTS_PHRASES


@dataclass(frozen=True)
class Problem:
    """One entry of a problem document's ``errors`` list: what was wrong, and where."""

    code: str | None = None
    message: str = ""
    field: str | None = None  # ``property`` in general problems, ``field`` in batch rows
    line: int | None = None  # index of the refused row in the batch sent, when named

    def describe(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"row {self.line}")
        if self.field:
            where.append(self.field)
        prefix = f"{' '.join(where)}: " if where else ""
        return f"{prefix}{self.message or self.code or 'invalid'}"


class SparkLayerError(Exception):
    """A SparkLayer call failed. ``status`` is None when no HTTP response arrived."""

    # Whether the client's retry loop resends the call; a class default, set per instance only
    # by PortalUnreachableError (one connection failure is retried, giving up is final).
    retryable: bool = False
    # Reason code in the exception catalogue (domain/exceptions.py) when a caller files it.
    reason_code: ClassVar[str | None] = None

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str | None = None,
        problems: Sequence[Problem] = (),
        *,
        method: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.method = method
        self.endpoint = endpoint  # the path template, e.g. /api/v1/price-lists/{slug}/pricing
        super().__init__(self._message())

    def _message(self) -> str:
        call = f"{self.method} {self.endpoint}" if self.method and self.endpoint else "call"
        status = f"{self.status} " if self.status is not None else ""
        text = f"SparkLayer {call} failed: {status}{self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        if self.problems:
            shown = "; ".join(p.describe() for p in self.problems[:5])
            more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
            text += f" [{shown}{more}]"
        return text

    @property
    def codes(self) -> set[str]:
        return {p.code for p in self.problems if p.code}

    @property
    def already_exists(self) -> bool:
        """Whether the portal refused a create because the resource is already there.

        SparkLayer says so with a 409 for customers and stock locations but a 400 for customer
        groups and price lists [doc], with the ``resource-already-exists`` code or, when the
        code is missing, in words; both are recognised.
        """
        if ALREADY_EXISTS_CODE in self.codes:
            return True
        texts = [self.title, self.detail or "", *(p.message for p in self.problems)]
        return any(phrase in text.casefold() for text in texts for phrase in ALREADY_EXISTS_PHRASES)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, title={self.title!r})"


class AuthenticationError(SparkLayerError):
    """The portal refused the client credentials, or kept refusing a freshly issued token."""


class ForbiddenError(SparkLayerError):
    """403 on an API call: the portal understood but will not do it (e.g. ordering disabled)."""


class NotFoundError(SparkLayerError):
    """404: the resource (customer, purchase, price list...) does not exist on the portal."""


class ConflictError(SparkLayerError):
    """409: a concurrent update clashed (retried), or the resource already exists (not retried).

    ``set_internal_identifier`` raises it, not retryable, when a purchase kept changing under
    every re-read it was allowed.
    """

    retryable = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Resending a create that clashed with an existing resource cannot succeed.
        self.retryable = not self.already_exists


class InvalidRequestError(SparkLayerError):
    """400: the portal refused what was sent; ``problems`` says which rows and fields.

    Never retried: the same body would be refused again. A 400 that says a customer group or
    price list already exists (``already_exists``) is how SparkLayer answers a repeated create.
    """

    @property
    def refused_lines(self) -> set[int]:
        return {p.line for p in self.problems if p.line is not None}


class RateLimitedError(SparkLayerError):
    """429: the portal asked the client to slow down, for ``retry_after`` seconds when given."""

    retryable = True

    def __init__(self, *args: object, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


class ServerError(SparkLayerError):
    """5xx: the portal failed; usually transient."""

    retryable = True


class MalformedResponseError(SparkLayerError):
    """A 2xx response whose body is not the JSON the contract promises.

    Retried a bounded number of times: it is usually a transient fault (a proxy page, a cut-off
    body), and every write the client makes is idempotent (PUT replaces, PATCH replaces the sent
    SKUs' breaks, stock rows overwrite, a repeated create answers 409 already-exists).
    """

    retryable = True


class PortalUnreachableError(SparkLayerError):
    """The portal could not be reached, or kept failing until the client gave up.

    The message says what was tried (method, path template, attempts, last status) so that the
    person reading an alert knows it is a transport problem, not bad data. ``last_error`` is the
    typed error of the final attempt, when there was a response.
    """

    reason_code = "PORTAL_UNREACHABLE"

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str | None = None,
        problems: Sequence[Problem] = (),
        *,
        method: str | None = None,
        endpoint: str | None = None,
        attempts: int = 1,
        last_error: SparkLayerError | None = None,
        retryable: bool = False,
    ) -> None:
        self.attempts = attempts
        self.last_error = last_error
        self.retryable = retryable
        super().__init__(status, title, detail, problems, method=method, endpoint=endpoint)

    def _message(self) -> str:
        call = f"{self.method} {self.endpoint}" if self.method and self.endpoint else "call"
        text = f"SparkLayer {call}: {self.title}"
        if self.detail:
            text += f"; {self.detail}"
        return text


class PortalConfigurationError(SparkLayerError):
    """``SPARKLAYER_BASE_URL`` is not an address the client can call: nothing was sent.

    Raised by the first call of a client made with such an address (making the client contacts
    nothing and never fails, so that a Dagster run fails in the step that needed the portal,
    with this message, rather than while starting its resources). Never retried: the same
    address fails the same way. The message is one line naming the variable, the address (with
    any password in it masked) and what is wrong with it.
    """

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(None, "the portal address is not usable", problem)

    def _message(self) -> str:
        return (
            f"SparkLayer: SPARKLAYER_BASE_URL {self.address!r} {self.problem}; expected the "
            "portal's API address, e.g. https://app.sparklayer.io. Nothing was sent."
        )
