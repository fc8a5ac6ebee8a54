"""``POST /api/auth/token``: client credentials in, a bearer token out (contract §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2b_pipeline.simulator.problems import ApiError, invalid_field, problem_item
from b2b_pipeline.simulator.routes import Request, Response
from b2b_pipeline.simulator.validation import require_object

if TYPE_CHECKING:
    from b2b_pipeline.simulator.app import Portal


def issue_token(portal: Portal, request: Request) -> Response:
    site_id = request.headers.get("Site-Id")
    if not site_id:
        raise invalid_field("Site-Id", "The Site-Id header is required.", "required")
    body = require_object(request.body(), "token request")
    if body.get("grant_type") != "client_credentials":
        raise invalid_field(
            "grant_type", "grant_type must be client_credentials.", "unsupported-grant-type"
        )
    if not portal.credentials.accepts(site_id, body.get("client_id"), body.get("client_secret")):
        # Never echo what was sent: the body may hold a real secret typed into the wrong place.
        message = "The client credentials are not valid for this Site-Id."
        raise ApiError(401, message, [problem_item("invalid-client", message, "client_secret")])
    token, expires_in = portal.tokens.issue(portal.config.token_ttl_seconds)
    return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
