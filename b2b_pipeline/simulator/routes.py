"""Requests, responses and path-template routing, independent of the HTTP server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from b2b_pipeline.simulator.problems import ApiError, invalid_field

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal

NO_BODY: Any = object()


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]  # path template parameters, URL-decoded
    query: dict[str, str]
    headers: Mapping[str, str]
    json: Any = NO_BODY

    def body(self) -> Any:
        """The JSON body; a 400 naming ``body`` when the call needs one and sent none."""
        if self.json is NO_BODY:
            raise invalid_field("body", "This call needs a JSON body.", "required")
        return self.json


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable; None means no body
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Portal", Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    # Writes are subject to injected conflicts (409) and per-resource locking.
    write: bool = False

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = [(route, route.segments) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method path`` and its parameters; 404 or 405 as a problem."""
        parts = path.strip("/").split("/")
        allowed: list[str] = []
        for route, segments in self._routes:
            params = _bind(segments, parts)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                405,
                f"{method} is not allowed on {path}.",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise ApiError(404, f"No endpoint at {path}.")

    def template_for(self, path: str) -> str | None:
        parts = path.strip("/").split("/")
        for route, segments in self._routes:
            if _bind(segments, parts) is not None:
                return route.template
        return None


def _bind(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(segments) != len(parts):
        return None
    params: dict[str, str] = {}
    for segment, part in zip(segments, parts, strict=True):
        if segment.startswith("{"):
            if not part:
                return None
            params[segment[1:-1]] = unquote(part)
        elif segment != part:
            return None
    return params
