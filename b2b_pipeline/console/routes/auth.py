"""Signing in and out.

A wrong name and a wrong password get the same answer, after the same work (``UserDirectory``
verifies against a dummy hash for an unknown name). Each refused sign-in is logged with the name
tried and the address, never the password. After 10 refused sign-ins from one address within 15
minutes, that address is turned away for the rest of the window (429), which makes guessing a
password through the form impractical without locking the real user out from elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from b2b_pipeline.console.app import (
    client_address,
    console_of,
    csrf_checked,
    refuse,
    render,
    safe_next,
    security_log,
    shown_name,
)

router = APIRouter()

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60
MAX_FIELD = 256


class _Failures:
    """Refused sign-ins per address in the last window (in memory: a restart forgets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen[address]
        while times and now - times[0] > WINDOW_SECONDS:
            times.popleft()
        return times

    def too_many(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) >= MAX_FAILURES

    def add(self, address: str) -> None:
        with self._lock:
            self._recent(address, time.monotonic()).append(time.monotonic())

    def forget(self, address: str) -> None:
        with self._lock:
            self._seen.pop(address, None)


FAILURES = _Failures()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    if request.state.user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(csrf_checked)])
def login(
    request: Request,
    username: str = Form(default="", max_length=MAX_FIELD),
    password: str = Form(default="", max_length=MAX_FIELD),
    next: str = Form(default="/exceptions", max_length=2048),
) -> Response:
    address = client_address(request)
    if FAILURES.too_many(address):
        refuse(
            request,
            429,
            f"too many refused sign-ins from this address (tried {shown_name(username)})",
            shown="Too many refused sign-ins from this address: wait 15 minutes and try again.",
        )
    user = console_of(request).users.authenticate(username.strip(), password)
    if user is None:
        FAILURES.add(address)
        security_log.warning(
            "refused sign-in as %s from %s: wrong user name or password",
            shown_name(username),
            address,
        )
        return render(
            request,
            "login.html",
            {"next": safe_next(next), "error": "Wrong user name or password.", "tried": username},
            status_code=401,
        )
    FAILURES.forget(address)
    request.state.session.sign_in(user.name)
    request.state.user = user
    security_log.info("signed in: user %s (%s) from %s", shown_name(user.name), user.role, address)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Depends(csrf_checked)])
def logout(request: Request) -> Response:
    request.state.session.clear()
    return RedirectResponse("/login", status_code=303)
