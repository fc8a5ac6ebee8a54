"""The audit key: the secret that seals the audit trail's checkpoints (``checkpoints.py``).

Without a secret, anyone who can write the DuckDB file can edit a row and recompute every
hash after it: the chain is then whole again and proves nothing. With each checkpoint sealed
by an HMAC under a key kept outside the file, such a rewrite needs the key too.

Where the key comes from, first match wins:

1. ``B2B_AUDIT_KEY``: the key itself, at least 32 characters. This is the production setting:
   put it in the secret store that already holds ``SPARKLAYER_CLIENT_SECRET`` and the ERP
   password, and give it only to the pipeline's processes (and to whoever runs
   ``b2b-pipeline audit verify``). Generate one with
   ``python -c "import secrets; print(secrets.token_hex(32))"``.
2. A key file: ``B2B_AUDIT_KEY_FILE``, by default ``<B2B_DATA_DIR>/audit.key``
   (``data/audit.key``), holding the key as text. The embedded demo has no secret store, so
   the first write to a trail that has never been sealed creates this file with 64 random hex
   characters (32 bytes from ``secrets``), mode 0600. It lies outside the audit file, so a copy
   or an edit of ``audit.duckdb`` alone does not carry it; it does not protect against someone
   who can read the data folder (the machine's administrator), which is what 1. is for.

Either way the key is the UTF-8 bytes of the text, so moving from the demo to production is
copying the file's content into ``B2B_AUDIT_KEY``.

A key is never created for a trail that is already sealed: a lost key is an error to fix
(restore the file or set the variable), not a reason to seal on under another key, which would
make every earlier seal fail verification. Readers (``audit verify``) never create a key.

The key never appears in a log, an audit row, an error or the UI: :class:`AuditKey` hides it
from ``repr``, and what is stored and shown is its *key id*, an HMAC of a fixed text under the
key cut to 16 hex characters, which tells two keys apart and reveals neither. Rotation is not
supported yet: a trail is sealed under one key for its whole life.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from b2b_pipeline.config.settings import ConfigurationError, data_dir

logger = logging.getLogger(__name__)

KEY_VARIABLE = "B2B_AUDIT_KEY"
KEY_FILE_VARIABLE = "B2B_AUDIT_KEY_FILE"
MIN_KEY_LENGTH = 32
_KEY_ID_TEXT = b"b2b-pipeline audit key id v1"


class AuditKeyError(ConfigurationError):
    """The audit key is missing, too short, unreadable or not the one the trail was sealed
    with (message: one line, never the key)."""


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key and where it came from (the variable's name or the file's path)."""

    secret: bytes = field(repr=False)
    source: str

    @cached_property
    def key_id(self) -> str:
        return hmac.new(self.secret, _KEY_ID_TEXT, hashlib.sha256).hexdigest()[:16]

    def seal(self, message: str) -> str:
        """HMAC-SHA256 of ``message`` under this key, in hex."""
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r}, source={self.source!r})"


def key_file_path() -> Path:
    """Where the key file is (``B2B_AUDIT_KEY_FILE``, default ``<B2B_DATA_DIR>/audit.key``)."""
    configured = os.environ.get(KEY_FILE_VARIABLE)
    return Path(configured).resolve() if configured else data_dir() / "audit.key"


def _from_text(text: str, source: str) -> AuditKey:
    secret = text.strip()
    if len(secret) < MIN_KEY_LENGTH:
        raise AuditKeyError(
            f"the audit key in {source} is {len(secret)} characters long; it needs at least "
            f'{MIN_KEY_LENGTH} (generate one with: python -c "import secrets; '
            'print(secrets.token_hex(32))")'
        )
    return AuditKey(secret.encode(), source)


def load_key() -> AuditKey | None:
    """The configured key, or None when neither the variable nor the key file exists."""
    text = os.environ.get(KEY_VARIABLE)
    if text:
        return _from_text(text, KEY_VARIABLE)
    path = key_file_path()
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise AuditKeyError(
            f"the audit key file {path} cannot be read ({type(error).__name__}); set "
            f"{KEY_VARIABLE} or fix the file"
        ) from None
    _warn_if_others_can_read(path)
    return _from_text(content, str(path))


def load_or_create_key() -> AuditKey:
    """The configured key; creates the key file (mode 0600) when there is none."""
    key = load_key()
    if key is not None:
        return key
    path = key_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        key = load_key()
        if key is None:  # pragma: no cover - deleted again in between
            raise AuditKeyError(f"the audit key file {path} vanished while being created") from None
        return key
    try:
        os.write(descriptor, (secrets.token_hex(32) + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    logger.info("created the audit key file %s (mode 0600); keep it apart from backups", path)
    created = load_key()
    assert created is not None
    return created


def _warn_if_others_can_read(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:  # pragma: no cover
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the audit key file %s can be read by other users (mode %o); run chmod 600 on it",
            path,
            stat.S_IMODE(mode),
        )
