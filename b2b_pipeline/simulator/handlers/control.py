"""Test-harness endpoints under ``/_sim/`` (contract §7): never counted, never faulted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2b_pipeline.simulator.faults import FaultSettings
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.validation import FieldErrors, number, require_object

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal


def reset(portal: Portal, request: Request) -> Response:
    """Forget all data, faults, call counts and config changes; issued tokens stay valid."""
    portal.state.clear()
    portal.faults.configure(FaultSettings())
    portal.calls.clear()
    portal.config.token_ttl_seconds = portal.initial_config.token_ttl_seconds
    portal.config.standard_tax_rate = portal.initial_config.standard_tax_rate
    return Response(200, {"reset": True})


def state_counts(portal: Portal, request: Request) -> Response:
    with portal.state.lock:
        return Response(200, portal.state.counts())


def get_faults(portal: Portal, request: Request) -> Response:
    return Response(200, portal.faults.settings.as_dict())


def put_faults(portal: Portal, request: Request) -> Response:
    portal.faults.configure(FaultSettings.from_body(request.body()))
    return Response(200, portal.faults.settings.as_dict())


def get_calls(portal: Portal, request: Request) -> Response:
    return Response(200, portal.calls.summary())


def clear_calls(portal: Portal, request: Request) -> Response:
    portal.calls.clear()
    return Response(200, portal.calls.summary())


def _config_body(portal: Portal) -> dict[str, float]:
    return {
        "token_ttl_seconds": portal.config.token_ttl_seconds,
        "standard_tax_rate": portal.config.standard_tax_rate,
    }


def get_config(portal: Portal, request: Request) -> Response:
    return Response(200, _config_body(portal))


def put_config(portal: Portal, request: Request) -> Response:
    body = require_object(request.body(), "simulator configuration")
    errors = FieldErrors()
    ttl = number(errors, body, "token_ttl_seconds", minimum=0.001)
    rate = number(errors, body, "standard_tax_rate", minimum=0, maximum=100)
    errors.raise_if_any("simulator configuration")
    if ttl is not None:
        portal.config.token_ttl_seconds = float(ttl)
    if rate is not None:
        portal.config.standard_tax_rate = float(rate)
    return Response(200, _config_body(portal))


def revoke_tokens(portal: Portal, request: Request) -> Response:
    portal.tokens.revoke_all()
    return Response(200, {"revoked": True})
