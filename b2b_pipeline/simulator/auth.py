"""Client-credentials tokens (contract §1): issued per site, expiring, revocable.

Tokens live in memory only: after a restart every client fetches a new one, as it must after
any 401. Nothing here logs or returns the client secret.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass, field

# Beyond this many live tokens, expired ones are swept on the next issue (a long benchmark that
# re-authenticates often must not grow memory without bound).
_SWEEP_AT = 10_000


@dataclass
class Credentials:
    site_id: str
    client_id: str
    client_secret: str = field(repr=False)

    def accepts(self, site_id: str | None, client_id: object, client_secret: object) -> bool:
        if not (isinstance(client_id, str) and isinstance(client_secret, str)):
            return False
        # Constant-time comparison: the simulator should not teach timing leaks by example.
        return (
            site_id == self.site_id
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        )


class TokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def issue(self, ttl_seconds: float) -> tuple[str, int]:
        """A new bearer token and its lifetime in whole seconds (``expires_in``)."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._expiry) >= _SWEEP_AT:
                self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            self._expiry[token] = now + ttl_seconds
        return token, max(1, math.ceil(ttl_seconds))

    def is_valid(self, token: str) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and expiry > time.monotonic()

    def revoke_all(self) -> None:
        with self._lock:
            self._expiry.clear()
