"""Signed session cookies and the CSRF token they carry.

The session is a small dict (the signed-in user's name, the CSRF token, a one-shot message for
the next page) signed with ``itsdangerous`` and kept in the browser: nothing to store or expire
on the server, and a restart does not sign anyone out. The cookie is ``HttpOnly`` (no script
reads it), ``SameSite=Lax`` (another site's form posts arrive without it) and ``Secure`` when the
console is reached over https. Every POST must also carry the session's CSRF token in a form
field (or the ``X-CSRF-Token`` header), compared in constant time.

The token is made when a visitor first gets a page (the sign-in form included, so signing in
is protected too) and replaced at sign-in, so a token seen before signing in is worthless after.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "b2b_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class Session(dict[str, Any]):
    """The session's data; ``changed`` says whether the cookie must be sent again."""

    changed: bool = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.changed = True

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.changed = True
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.changed = True

    @property
    def user_name(self) -> str | None:
        return self.get("user")

    @property
    def csrf_token(self) -> str:
        if not self.get("csrf"):
            self["csrf"] = secrets.token_urlsafe(32)
        return str(self["csrf"])

    def sign_in(self, user_name: str) -> None:
        """A fresh session for ``user_name``: new CSRF token, sign-in time."""
        self.clear()
        self["user"] = user_name
        self["since"] = int(time.time())
        self["csrf"] = secrets.token_urlsafe(32)

    def csrf_matches(self, offered: str | None) -> bool:
        expected = self.get("csrf")
        if not expected or not offered:
            return False
        return hmac.compare_digest(str(expected).encode(), str(offered).encode())


class SessionCodec:
    """Turns a session into a signed cookie value and back (expired or forged: empty)."""

    def __init__(self, secret: bytes, *, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="b2b-console-session")
        self.max_age_seconds = max_age_seconds

    def load(self, cookie: str | None) -> Session:
        if not cookie:
            return Session()
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:  # includes SignatureExpired
            return Session()
        return Session(data) if isinstance(data, dict) else Session()

    def dump(self, session: Session) -> str:
        return self._serializer.dumps(dict(session))
