"""Who may sign in to the console: a YAML file of names, roles and argon2 password hashes.

```yaml
# written by `b2b-pipeline console add-user NAME --role ROLE`
users:
  priya:
    role: finance
    password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."
```

Only hashes are stored (argon2id through ``argon2-cffi``, its recommended parameters). The file is
re-read when it changes, so a user added or removed takes effect without a restart; a session of
a removed user stops at its next request. The embedded demo's user is made by
:func:`demo_credentials`, whose password is generated once into the data folder (owner-only)
and shown by ``scripts/start`` alone: nothing here ever logs a password.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from b2b_pipeline.config.settings import Settings
from b2b_pipeline.console.config import DEMO_PASSWORD_FILE, users_path, write_private
from b2b_pipeline.console.roles import Role

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_ROLE = Role.ADMIN  # the demo shows every action, so its one user may do them all
MIN_PASSWORD_LENGTH = 10
# Names end up in the audit trail's "by" and in log lines: plain characters only.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_HASHER = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs the same time as a wrong
# password and the answer does not tell which one was wrong.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UsersFileError(ValueError):
    """The users file cannot be read (the message names the file and the problem)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role


@dataclass(frozen=True)
class _Entry:
    role: Role
    password_hash: str


def _parse(path: Path, text: str) -> dict[str, _Entry]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{path} is not valid YAML ({exc.__class__.__name__})") from None
    users = document.get("users") if isinstance(document, dict) else None
    if users is None:
        return {}
    if not isinstance(users, dict):
        raise UsersFileError(f"{path}: 'users' must map each name to its role and hash")
    entries: dict[str, _Entry] = {}
    for name, entry in users.items():
        if not isinstance(entry, dict):
            raise UsersFileError(f"{path}: user {name!r} needs a role and a password_hash")
        try:
            role = Role(str(entry.get("role", "")).lower())
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise UsersFileError(
                f"{path}: user {name!r} has role {entry.get('role')!r}; use one of {roles}"
            ) from None
        password_hash = entry.get("password_hash")
        if not isinstance(password_hash, str) or not password_hash.startswith("$argon2"):
            raise UsersFileError(f"{path}: user {name!r} has no argon2 password_hash")
        entries[str(name)] = _Entry(role=role, password_hash=password_hash)
    return entries


def _read(path: Path) -> dict[str, _Entry]:
    if not path.exists():
        return {}
    return _parse(path, path.read_text(encoding="utf-8"))


def _dump(entries: dict[str, _Entry]) -> str:
    body: dict[str, Any] = {
        "users": {
            name: {"role": entry.role.value, "password_hash": entry.password_hash}
            for name, entry in sorted(entries.items())
        }
    }
    return (
        "# b2b-pipeline console users: written by `b2b-pipeline console add-user NAME --role "
        "ROLE`.\n# Only argon2 hashes are kept here; roles: viewer, operations, finance, admin.\n"
        + yaml.safe_dump(body, sort_keys=False)
    )


class UserDirectory:
    """The users file, re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, _Entry] = {}
        self._refresh(strict=True)  # an unreadable file stops the console from starting

    def _refresh(self, *, strict: bool = False) -> dict[str, _Entry]:
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._entries = _read(self.path) if stamp else {}
                except UsersFileError as exc:
                    if strict:
                        raise
                    # A file half-edited by hand: keep the users that worked, say why once.
                    log.error("%s; keeping the users read before", exc)
                self._stamp = stamp
            return self._entries

    def __len__(self) -> int:
        return len(self._refresh())

    def get(self, name: str | None) -> User | None:
        if not name:
            return None
        entry = self._refresh().get(name)
        return User(name=name, role=entry.role) if entry else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user, when ``password`` is theirs; None otherwise (same cost either way)."""
        entry = self._refresh().get(name)
        try:
            _HASHER.verify(entry.password_hash if entry else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return User(name=name, role=entry.role) if entry else None


def validate_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name or ""):
        raise ValueError(
            "a user name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


def add_user(path: Path, name: str, role: str | Role, password: str) -> bool:
    """Add ``name`` with ``role`` (or replace their role and password); True when new."""
    validate_user_name(name)
    role = Role(str(role).lower())
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    entries = _read(path)
    is_new = name not in entries
    entries[name] = _Entry(role=role, password_hash=_HASHER.hash(password))
    write_private(path, _dump(entries))
    return is_new


def remove_user(path: Path, name: str) -> bool:
    """Remove ``name``; True when they were there. Their sessions end at the next request."""
    entries = _read(path)
    if entries.pop(name, None) is None:
        return False
    write_private(path, _dump(entries))
    return True


def demo_credentials(settings: Settings | None = None) -> tuple[str, str]:
    """The embedded demo's console user and password, for ``scripts/start`` to print.

    The password is generated once into ``<data dir>/console-demo-password`` (owner-only) and
    the user (``demo``, role admin) is written to the users file with its hash; later calls
    return the same pair. Never log what this returns.
    """
    settings = settings or Settings.from_env()
    users = users_path(settings)
    secret_file = settings.data_dir / DEMO_PASSWORD_FILE
    password = secret_file.read_text(encoding="utf-8").strip() if secret_file.exists() else ""
    if not password:
        password = secrets.token_urlsafe(12)
        write_private(secret_file, password + "\n")
    entry = _read(users).get(DEMO_USER)
    if entry is None or UserDirectory(users).authenticate(DEMO_USER, password) is None:
        add_user(users, DEMO_USER, entry.role if entry else DEMO_ROLE, password)
    return DEMO_USER, password
