"""Where the console keeps its users and its session key, and where the Dagster UI is.

- ``B2B_CONSOLE_USERS``: the users file (YAML, argon2 hashes; ``b2b-pipeline console
  add-user`` writes it). Default ``<data dir>/console-users.yaml``.
- ``B2B_CONSOLE_SECRET``: the key that signs session cookies. Default: a random key generated
  once into ``<data dir>/console-session.key`` (readable by its owner only), so sessions survive
  a restart and two machines never share a key by accident.
- ``DAGSTER_PORT``: the Dagster UI's port on loopback, for the links to runs (default 3000);
  ``B2B_DAGSTER_URL`` replaces the whole address when the UI is elsewhere.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from b2b_pipeline.config.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
USERS_FILE = "console-users.yaml"
SECRET_FILE = "console-session.key"
DEMO_PASSWORD_FILE = "console-demo-password"
# A signed-in session lasts a working day; signing in again is cheap, a stolen cookie is not.
SESSION_HOURS = 12.0


@dataclass(frozen=True)
class ConsoleConfig:
    users_path: Path
    # repr=False: a config printed in a log or a traceback must not show the key.
    session_secret: bytes = field(repr=False)
    dagster_url: str
    demo_password_path: Path
    session_hours: float = SESSION_HOURS

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> ConsoleConfig:
        settings = settings or Settings.from_env()
        env = os.environ
        users = env.get("B2B_CONSOLE_USERS")
        secret = env.get("B2B_CONSOLE_SECRET")
        dagster = env.get("B2B_DAGSTER_URL") or (
            f"http://127.0.0.1:{env.get('DAGSTER_PORT') or '3000'}"
        )
        return cls(
            users_path=Path(users) if users else users_path(settings),
            session_secret=secret.encode() if secret else _session_key(settings.data_dir),
            dagster_url=dagster.rstrip("/"),
            demo_password_path=settings.data_dir / DEMO_PASSWORD_FILE,
        )

    def dagster_run_url(self, run_id: str) -> str:
        return f"{self.dagster_url}/runs/{run_id}"


def users_path(settings: Settings | None = None) -> Path:
    """The users file the console reads (``B2B_CONSOLE_USERS``, else in the data folder)."""
    named = os.environ.get("B2B_CONSOLE_USERS")
    if named:
        return Path(named)
    return (settings or Settings.from_env()).data_dir / USERS_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, replacing it in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(staging, path)


def _session_key(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    if not path.exists():
        # Written whole beside the target, then linked into place: link() fails if another
        # process made the key first, so both end up using the same one, never a half-written
        # file.
        staging = data_dir / f".{SECRET_FILE}.{secrets.token_hex(4)}"
        write_private(staging, secrets.token_urlsafe(48))
        try:
            os.link(staging, path)
        except FileExistsError:
            pass
        finally:
            staging.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip().encode()
