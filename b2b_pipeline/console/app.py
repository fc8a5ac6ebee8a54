"""The console's web application: FastAPI (Starlette) pages rendered by Jinja2, no build step.

Every request passes one gate (:func:`_gate`): it reads the signed session cookie, finds the
signed-in user in the users file, and sends anyone who is not signed in to ``/login`` (only the
sign-in page and the static files are reachable without a session). POSTs must also carry the
session's CSRF token (:func:`csrf_checked`), and each action checks the user's role
(:func:`require`). Every refusal is logged on ``b2b_pipeline.console.security`` with the user
(or the name tried), the address and the reason, never a password.

Responses carry a strict Content-Security-Policy (scripts and styles from the console itself
only), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``: pages hold customer data.
Order data (PO numbers, company names, messages) is always escaped by the templates.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from b2b_pipeline.config.settings import Settings
from b2b_pipeline.console.auth import User
from b2b_pipeline.console.config import ConsoleConfig
from b2b_pipeline.console.formatting import FILTERS, TESTS
from b2b_pipeline.console.roles import Permission, may, roles_allowed
from b2b_pipeline.console.services import Console
from b2b_pipeline.console.sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, Session

HERE = Path(__file__).resolve().parent
security_log = logging.getLogger("b2b_pipeline.console.security")

PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/static/",)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def shown_name(name: str | None) -> str:
    """A user name as it may appear in a log line: printable, bounded (no log injection)."""
    text = (name or "").strip()
    cleaned = "".join(c if c.isprintable() else "?" for c in text)[:64]
    return repr(cleaned)


def refuse(request: Request, status: int, reason: str, *, shown: str | None = None) -> None:
    """Log a refused attempt (who, from where, what, why) and stop the request."""
    user: User | None = request.state.user
    who = f"user {shown_name(user.name)} ({user.role})" if user else "an anonymous visitor"
    security_log.warning(
        "refused %s %s for %s from %s: %s",
        request.method,
        request.url.path,
        who,
        client_address(request),
        reason,
    )
    raise HTTPException(status_code=status, detail=shown or reason)


def require(request: Request, permission: Permission) -> User:
    """The signed-in user, when their role allows ``permission``; else 403 (logged)."""
    user: User | None = request.state.user
    if user is None:  # the gate lets no one through unsigned; this is a second lock
        refuse(request, 403, "not signed in")
    assert user is not None
    if not may(user.role, permission):
        allowed = " or ".join(roles_allowed(permission))
        refuse(
            request,
            403,
            f"role {user.role} may not {permission.value} (needs {allowed})",
            shown=f"Your role ({user.role}) may not {permission.value}; that needs {allowed}.",
        )
    return user


async def csrf_checked(request: Request) -> None:
    """Dependency of every POST: the form's (or header's) token must be the session's."""
    offered = request.headers.get(CSRF_HEADER)
    if offered is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        offered = value if isinstance(value, str) else None
    session: Session = request.state.session
    if not session.csrf_matches(offered):
        refuse(
            request,
            403,
            "CSRF token missing or wrong",
            shown="This form has expired or did not come from the console. Reload the page "
            "and try again.",
        )


def console_of(request: Request) -> Console:
    return request.app.state.console


def can(request: Request, permission: Permission) -> bool:
    user: User | None = request.state.user
    return bool(user and may(user.role, permission))


def flash(request: Request, messages: list[dict[str, Any]]) -> None:
    """Messages for the next page this session opens (the outcome of an action)."""
    request.state.session["flash"] = console_of(request).put_flash(messages)


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    session: Session = request.state.session
    messages = console_of(request).take_flash(session.pop("flash", None))
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": request.state.user,
            "csrf_field": CSRF_FIELD,
            "csrf_token": session.csrf_token,
            "flashes": messages,
            "can": lambda name: can(request, Permission[name]),
            "dagster_run_url": console_of(request).config.dagster_run_url,
            **context,
        },
        status_code=status_code,
    )


def safe_next(target: str | None, default: str = "/exceptions") -> str:
    """A same-site path to go back to (never another site: ``//evil`` or ``https://``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        # Everything an order carries is data, never markup.
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(FILTERS)
    environment.tests.update(TESTS)
    return Jinja2Templates(env=environment)


def create_app(
    *,
    settings: Settings | None = None,
    config: ConsoleConfig | None = None,
    console: Console | None = None,
) -> FastAPI:
    """The console app; ``console`` replaces the default services (a test's run functions)."""
    settings = settings or Settings.from_env()
    config = config or ConsoleConfig.from_env(settings)
    console = console or Console.from_settings(settings, config)

    app = FastAPI(
        title="b2b-pipeline console",
        docs_url=None,  # no API explorer: the console is pages for people
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = console
    app.state.templates = _templates()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def _gate(request: Request, call_next: Any) -> Response:
        session = console.codec.load(request.cookies.get(COOKIE_NAME))
        user = console.users.get(session.user_name)
        if session.user_name and (user is None or _expired(session, config)):
            session.clear()  # removed from the users file, or signed in too long ago
            user = None
        request.state.session = session
        request.state.user = user
        path = request.url.path
        if user is None and not _is_public(path):
            if request.method in ("GET", "HEAD"):
                back = path + (f"?{request.url.query}" if request.url.query else "")
                response: Response = RedirectResponse(
                    f"/login?next={quote(back, safe='')}", status_code=303
                )
            else:
                security_log.warning(
                    "refused %s %s for an anonymous visitor from %s: not signed in",
                    request.method,
                    path,
                    client_address(request),
                )
                response = RedirectResponse("/login", status_code=303)
        else:
            response = await call_next(request)
        if session.changed:
            response.set_cookie(
                COOKIE_NAME,
                console.codec.dump(session),
                max_age=console.codec.max_age_seconds,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path="/",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not path.startswith(PUBLIC_PREFIXES):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _error_page(request: Request, exc: StarletteHTTPException) -> Response:
        if not hasattr(request.state, "session"):  # raised before the gate (a bad URL)
            return HTMLResponse(str(exc.detail), status_code=exc.status_code)
        titles = {403: "Not allowed", 404: "Not found", 400: "Cannot do that", 429: "Slow down"}
        return render(
            request,
            "error.html",
            {"title": titles.get(exc.status_code, "Error"), "detail": exc.detail},
            status_code=exc.status_code,
        )

    from b2b_pipeline.console.routes import auth, exceptions, health, month_end, prices

    for module in (auth, exceptions, month_end, prices, health):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/exceptions", status_code=303)

    return app


def _expired(session: Session, config: ConsoleConfig) -> bool:
    since = session.get("since")
    if not isinstance(since, int):
        return True
    return time.time() - since > config.session_hours * 3600
