"""A proxy in front of the simulator: the faults a network and a hostile portal add.

The simulator injects its own faults (5xx, 409, malformed bodies, latency: ``/_sim/faults``).
This proxy adds what only something between the client and the portal can do, at a seeded
rate per ``/api`` call:

- ``throttle_rate``: 429 with a short ``Retry-After`` (the simulator's own limiter answers
  whole seconds, which at 20% of a few thousand calls would make a run last many minutes);
- ``drop_rate``: the connection closes before the call reaches the portal;
- ``lose_response_rate``: the portal applies the call and the answer never arrives. This is
  what a timeout is from the client's side (the client's read timeout is 30 s, so waiting it
  out for real would only add time): the write happened, the client does not know, and
  resends it;
- ``latency_rate`` / ``latency_s``: a slow answer on some calls only.

With a :class:`HostilePortal`, the purchase list (``GET /api/v1/purchases``) is the portal's
own list with the hostile entries merged in (newest first by ``dates.updated_at`` then id, the
window filters applied, paged by offset like the real list), and reads and write-backs of a
hostile purchase by SparkLayer id are answered from the catalogue.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests

from b2b_pipeline.connectors.sparklayer import wire
from benchmarks.reliability.sandbox import free_port

PURCHASES = wire.PURCHASES_PATH
BY_ID = PURCHASES + "/sparklayer/"
UPDATED_GTE = wire.UPDATED_GTE_PARAM
UPDATED_LTE = wire.UPDATED_LTE_PARAM
PAGE = wire.PURCHASES_LIMIT_MAX
# Headers passed on to the portal and back (hop-by-hop ones never are).
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent", wire.SITE_HEADER)
RESPONSE_HEADERS = ("Content-Type", "Retry-After")


@dataclass
class ProxyFaults:
    throttle_rate: float = 0.0
    retry_after: str = "0.2"
    drop_rate: float = 0.0
    lose_response_rate: float = 0.0
    latency_rate: float = 0.0
    latency_s: float = 0.0
    seed: int = 0


@dataclass
class HostileEntry:
    """One entry of the hostile list: where it sorts, and the JSON value served."""

    sort_time: str  # ISO-8601, the simulator's format, so it sorts with real purchases
    sort_id: str
    document: Any


@dataclass
class HostilePortal:
    entries: list[HostileEntry]
    by_id: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for entry in self.entries:
            key = served_id(entry.document)
            if key is not None:
                self.by_id.setdefault(key, entry.document)


def served_id(document: Any) -> str | None:
    """The SparkLayer id of an entry as a lenient reader takes it: a non-blank string, or a
    number in its text form (``4.5`` -> ``"4.5"``); None when there is no usable id."""
    identifiers = document.get("purchase_identifiers") if isinstance(document, dict) else None
    value = identifiers.get("sparklayer") if isinstance(identifiers, dict) else None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _sort_key(purchase: Any) -> tuple[str, str]:
    dates = purchase.get("dates") if isinstance(purchase, dict) else None
    updated = dates.get("updated_at") if isinstance(dates, dict) else None
    return (str(updated or ""), str(served_id(purchase) or ""))


class PortalProxy:
    """Forwards ``/api`` and ``/_sim`` calls to ``target``, adding faults to ``/api`` ones."""

    def __init__(
        self,
        target: str,
        faults: ProxyFaults | None = None,
        hostile: HostilePortal | None = None,
        tokens: set[str] | None = None,
    ) -> None:
        self.target = target.rstrip("/")
        # Every bearer token seen on the wire, for the secret scan (``secrets.py``).
        self.tokens = tokens if tokens is not None else set()
        self.faults = faults or ProxyFaults()
        self.hostile = hostile
        self.stats: Counter[str] = Counter()
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = _QuietServer(("127.0.0.1", free_port()), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PortalProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def draw(self) -> str | None:
        """Which fault, if any, this call gets (one seeded draw per fault kind)."""
        f = self.faults
        with self._lock:
            draws = [self._random.random() for _ in range(4)]
        for name, rate, value in zip(
            ("throttle", "drop", "lose_response", "latency"),
            (f.throttle_rate, f.drop_rate, f.lose_response_rate, f.latency_rate),
            draws,
            strict=True,
        ):
            if value < rate:
                with self._lock:
                    self.stats[name] += 1
                return name
        return None

    def forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        response = self.session().request(
            method, self.target + target, headers=headers, data=body or None, timeout=60
        )
        kept = {k: v for k, v in response.headers.items() if k in RESPONSE_HEADERS}
        return response.status_code, kept, response.content

    def note_tokens(self, authorization: str | None, token_answer: bytes | None) -> None:
        """Record the token a call carries, or the one a token answer issues."""
        found = None
        if authorization and authorization.lower().startswith("bearer "):
            found = authorization[7:].strip()
        elif token_answer:
            with contextlib.suppress(ValueError, AttributeError):
                found = json.loads(token_answer).get(wire.TOKEN_FIELD)
        if isinstance(found, str) and found:
            with self._lock:
                self.tokens.add(found)

    # -- the hostile list -----------------------------------------------------------------------

    def purchase_list(
        self, target: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        assert self.hostile is not None
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        offset = int(params.pop(wire.OFFSET_PARAM, "0") or 0)
        limit = int(params.pop(wire.LIMIT_PARAM, str(PAGE)) or PAGE)
        real: list[Any] = []
        page_offset = 0
        while True:  # the portal's whole list in this window, then merged and paged here
            response = self.session().get(
                self.target + PURCHASES,
                params={**params, wire.LIMIT_PARAM: str(PAGE), wire.OFFSET_PARAM: str(page_offset)},
                headers=headers,
                timeout=60,
            )
            if response.status_code != 200:
                kept = {k: v for k, v in response.headers.items() if k in RESPONSE_HEADERS}
                return response.status_code, kept, response.content
            page = response.json()
            real.extend(page)
            if len(page) < PAGE:
                break
            page_offset += PAGE
        gte, lte = params.get(UPDATED_GTE), params.get(UPDATED_LTE)
        merged = [(_sort_key(p), p) for p in real]
        for entry in self.hostile.entries:
            if (gte and entry.sort_time < _iso(gte)) or (lte and entry.sort_time > _iso(lte)):
                continue
            merged.append(((entry.sort_time, entry.sort_id), entry.document))
        merged.sort(key=lambda pair: pair[0], reverse=True)
        shown = [document for _, document in merged[offset : offset + limit]]
        # allow_nan=False: every page served is JSON, whatever the catalogue holds.
        body = json.dumps(shown, ensure_ascii=False, allow_nan=False).encode()
        return 200, {"Content-Type": "application/json"}, body

    def hostile_purchase(
        self, method: str, identifier: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """A read or write-back of a hostile purchase, answered from the catalogue."""
        assert self.hostile is not None
        with self.hostile.lock:
            document = self.hostile.by_id.get(identifier)
            if document is None:
                return None
            if method == "PUT":
                sent = json.loads(body or b"{}")
                internal = (sent.get("purchase_identifiers") or {}).get("internal")
                if isinstance(document.get("purchase_identifiers"), dict):
                    document["purchase_identifiers"]["internal"] = internal
            answer = json.dumps(document, ensure_ascii=False, allow_nan=False).encode()
        return 200, {"Content-Type": "application/json"}, answer


def _iso(text: str) -> str:
    """A window bound in the simulator's timestamp format, for string comparison."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a run killed, a dropped call) is what the scenarios do;
        anything else is still printed."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # quiet: the suite prints
        pass

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self) -> None:
        proxy: PortalProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        wanted = {name.lower() for name in REQUEST_HEADERS}
        headers = {k: v for k, v in self.headers.items() if k.lower() in wanted}
        path = urlsplit(self.path).path
        proxy.note_tokens(self.headers.get("Authorization"), None)
        fault = proxy.draw() if path.startswith("/api/") else None
        if fault == "drop":
            return self._drop()
        if fault == "throttle":
            return self._send(
                429,
                {"Content-Type": "application/json", "Retry-After": proxy.faults.retry_after},
                b'{"title": "Too Many Requests", "status": 429}',
            )
        if fault == "latency":
            time.sleep(proxy.faults.latency_s)
        answer = None
        if proxy.hostile is not None:
            if self.command == "GET" and path == PURCHASES:
                answer = proxy.purchase_list(self.path, headers)
            elif path.startswith(BY_ID) and self.command in ("GET", "PUT"):
                answer = proxy.hostile_purchase(self.command, unquote(path[len(BY_ID) :]), body)
        if answer is None:
            try:
                answer = proxy.forward(self.command, self.path, headers, body)
            except requests.RequestException:
                return self._drop()  # the portal is down: so is the path to it
        if path == wire.TOKEN_PATH:
            proxy.note_tokens(None, answer[2])
        if fault == "lose_response":
            return self._drop()
        self._send(*answer)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch
