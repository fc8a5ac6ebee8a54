"""The simulated SparkLayer as an application: one call in, one response out, no sockets.

:meth:`Simulator.handle` is the whole request pipeline for ``/api`` calls, in this order:
route -> count -> rate limit and injected faults -> authentication -> media types -> injected
conflict (writes) -> handler -> injected malformed body. ``/_sim/`` calls skip the counting
and every fault. The HTTP server in ``server.py`` only moves bytes in and out of here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from b2b_pipeline.simulator.auth import Credentials, TokenStore
from b2b_pipeline.simulator.calls import CallLog
from b2b_pipeline.simulator.faults import FaultInjector
from b2b_pipeline.simulator.handlers import api_routes, control_routes
from b2b_pipeline.simulator.problems import (
    PROBLEM_CONTENT_TYPE,
    ApiError,
    concurrent_update,
    invalid_field,
    problem_item,
)
from b2b_pipeline.simulator.routes import NO_BODY, Request, Response, Router
from b2b_pipeline.simulator.state import PortalState, ResourceLocks

logger = logging.getLogger(__name__)

TOKEN_ENDPOINT = "/api/auth/token"
JSON_CONTENT_TYPE = "application/json"
_INTERNAL_ERROR = ApiError(500, "The simulator failed to handle this call; see its log.")
_ACCEPTABLE = {"*/*", "application/*", "application/json", "application/problem+json"}


@dataclass
class SimulatorConfig:
    """Settings a test may change at run time (``PUT /_sim/config``)."""

    token_ttl_seconds: float = 3600.0
    standard_tax_rate: float = 20.0


class Portal:
    """Everything a handler may read or change."""

    def __init__(
        self, credentials: Credentials, config: SimulatorConfig, state: PortalState
    ) -> None:
        self.credentials = credentials
        self.config = config
        self.initial_config = SimulatorConfig(**vars(config))
        self.state = state
        self.locks = ResourceLocks()
        self.tokens = TokenStore()
        self.faults = FaultInjector()
        self.calls = CallLog()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Simulator:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self._api = Router(api_routes())
        self._control = Router(control_routes())

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> RawResponse:
        url = urlsplit(target)
        path = url.path
        query = dict(parse_qsl(url.query))
        if path.startswith("/_sim/"):
            return self._handle_control(method, path, query, headers, body)
        return self._handle_api(method, path, query, headers, body)

    def _handle_control(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str], body: bytes
    ) -> RawResponse:
        try:
            route, params = self._control.match(method, path)
            payload = _parse_json(body) if body else NO_BODY
            request = Request(method, path, params, query, headers, payload)
            return _encode(route.handler(self.portal, request))
        except ApiError as error:
            return _encode_problem(error)
        except Exception:
            logger.exception("Simulator control call %s %s failed", method, path)
            return _encode_problem(_INTERNAL_ERROR)

    def _handle_api(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str], body: bytes
    ) -> RawResponse:
        portal = self.portal
        endpoint = self._api.template_for(path) or path
        payload: Any = NO_BODY
        body_error: ApiError | None = None
        if body:
            try:
                payload = _parse_json(body)
            except ApiError as error:
                body_error = error
        items = len(payload) if isinstance(payload, list) else None
        try:
            route, params = self._api.match(method, path)
            verdict = portal.faults.before_request(method, endpoint, path)
            if route.template != TOKEN_ENDPOINT:
                _authenticate(portal, headers)
            _check_media_types(headers, body)
            if body_error is not None:
                raise body_error
            if route.write and verdict.conflict:
                raise concurrent_update("This resource")
            response = route.handler(portal, Request(method, path, params, query, headers, payload))
            raw = _encode(response)
            if verdict.malformed and 200 <= raw.status < 300 and raw.body:
                raw = _truncate(raw)
        except ApiError as error:
            raw = _encode_problem(error)
        except Exception:
            # A simulator bug must look like a portal outage to the client (a 500 it retries),
            # never a dropped connection, and must be visible in the simulator's log.
            logger.exception("Simulator API call %s %s failed", method, path)
            raw = _encode_problem(_INTERNAL_ERROR)
        portal.calls.record(method, path, endpoint, raw.status, items)
        return raw


def _authenticate(portal: Portal, headers: Mapping[str, str]) -> None:
    site_id = headers.get("Site-Id")
    if not site_id:
        raise invalid_field("Site-Id", "The Site-Id header is required.", "required")
    authorization = headers.get("Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("A bearer token is required (Authorization: Bearer <token>).")
    if portal.faults.reject_all_tokens or not portal.tokens.is_valid(token.strip()):
        raise _unauthorized("The access token is invalid or has expired; fetch a new one.")
    if site_id != portal.credentials.site_id:
        raise _unauthorized("The access token is not valid for this Site-Id.")


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        message,
        [problem_item("unauthorized", message, "Authorization")],
        headers={"WWW-Authenticate": "Bearer"},
    )


def _check_media_types(headers: Mapping[str, str], body: bytes) -> None:
    accept = headers.get("Accept")
    if accept:
        ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not ranges & _ACCEPTABLE:
            raise ApiError(406, "This API answers application/json only.")
    if body:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != JSON_CONTENT_TYPE and not content_type.endswith("+json"):
            message = "Request bodies must be JSON (Content-Type: application/json)."
            raise ApiError(415, message, [problem_item("unsupported-media-type", message, "")])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_field(
            "body", f"The body is not valid JSON ({exc}).", "invalid-json"
        ) from None


def _encode(response: Response) -> RawResponse:
    headers = dict(response.headers)
    if response.body is None:
        return RawResponse(response.status, headers, b"")
    headers["Content-Type"] = JSON_CONTENT_TYPE
    body = json.dumps(response.body, separators=(",", ":")).encode()
    return RawResponse(response.status, headers, body)


def _encode_problem(error: ApiError) -> RawResponse:
    headers = {**error.headers, "Content-Type": PROBLEM_CONTENT_TYPE}
    return RawResponse(error.status, headers, json.dumps(error.problem()).encode())


def _truncate(raw: RawResponse) -> RawResponse:
    """A body cut short, as a proxy dropping the connection mid-response would leave it."""
    return RawResponse(raw.status, raw.headers, raw.body[: max(1, len(raw.body) // 2)])
