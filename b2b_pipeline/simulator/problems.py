"""RFC 7807 problem documents: how the simulated portal says no.

Every refusal is an :class:`ApiError` raised anywhere below the HTTP layer; the server turns it
into ``application/problem+json`` with the shape SparkLayer documents (``title``, ``status``,
``detail``, ``errors: [{code, message, property}]``). Rows of an array body also carry ``line``
(0-based index into the request array) and ``field`` (the row's offending field), so a client
can drop exactly the rows that were refused.
"""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Error codes SparkLayer documents; the others are the simulator's own, in the same style.
RESOURCE_ALREADY_EXISTS = "resource-already-exists"
RESOURCE_ID_NOT_FOUND = "resource-id-not-found"
ID_MISMATCH = "idMismatch"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def problem_item(
    code: str, message: str, prop: str, *, line: int | None = None, field: str | None = None
) -> dict[str, Any]:
    """One entry of a problem document's ``errors`` list."""
    item: dict[str, Any] = {"code": code, "message": message, "property": prop}
    if line is not None:
        item["line"] = line
        item["field"] = field
    return item


class ApiError(Exception):
    """A refusal that becomes a problem document with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.title = title or TITLES.get(status, "Error")

    def problem(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errors": self.errors,
        }


def invalid(detail: str, errors: list[dict[str, Any]]) -> ApiError:
    return ApiError(400, detail, errors)


def invalid_field(prop: str, message: str, code: str = "invalid-value") -> ApiError:
    """A 400 about one named field (query parameter, header or body field)."""
    return ApiError(400, message, [problem_item(code, message, prop)])


def not_found(kind: str, identifier: str, prop: str = "identifier") -> ApiError:
    message = f"No {kind} with identifier {identifier!r}."
    return ApiError(404, message, [problem_item(RESOURCE_ID_NOT_FOUND, message, prop)])


def already_exists(kind: str, key: str, prop: str, *, status: int = 409) -> ApiError:
    """A duplicate create: 409 for customers and stock locations, but 400 for customer groups
    and price lists, as SparkLayer documents them (contract §1)."""
    message = f"A {kind} with {prop} {key!r} already exists."
    return ApiError(status, message, [problem_item(RESOURCE_ALREADY_EXISTS, message, prop)])


def concurrent_update(resource: str) -> ApiError:
    message = f"{resource} is being updated by another request; retry shortly."
    return ApiError(409, message, [problem_item("concurrent-update", message, "")])


def id_mismatch(prop: str, identifier: str) -> ApiError:
    message = f"The body's {prop} must equal the identifier in the path ({identifier!r})."
    return ApiError(400, message, [problem_item(ID_MISMATCH, message, prop)])
