"""The embedded SparkLayer simulator as a real HTTP server on loopback.

``SimulatorServer`` serves :class:`~b2b_pipeline.simulator.app.Simulator` with the standard
library's ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, so a client's session reuses its
connection) in a background daemon thread; ``serve_forever`` is the blocking form behind
``b2b-pipeline sim``. Requests are logged at DEBUG as method, path and status only: never
headers (the bearer token) nor bodies (the client secret).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

from b2b_pipeline.simulator.app import Portal, Simulator, SimulatorConfig
from b2b_pipeline.simulator.auth import Credentials
from b2b_pipeline.simulator.persistence import StateSaver, load_state
from b2b_pipeline.simulator.state import PortalState

logger = logging.getLogger(__name__)

# Bodies above this size are refused before being read (a 500-row batch is ~50 kB).
MAX_BODY_BYTES = 32 * 1024 * 1024


class _SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many short-lived client connections during benchmarks: a deeper accept queue.
    request_queue_size = 128
    simulator: Simulator

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _RequestHandler)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_open_connections(self) -> None:
        """End keep-alive connections, so a stopped simulator really stops answering."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, each response waits for the
    # client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _SimulatorHTTPServer
    server_version = "SparkLayerSimulator/1.0"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # The body cannot be read reliably: answer and drop the connection.
            self.send_error(413 if length > 0 else 400, "Bad or too large Content-Length")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        # The headers' Message reads like a case-insensitive mapping (get, [], in), which is
        # what the simulator relies on; typeshed just does not declare it a Mapping.
        headers = cast("Mapping[str, str]", self.headers)
        response = self.server.simulator.handle(self.command, self.path, headers, body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        # The request line holds method and path only; headers and bodies are never logged.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)


class SimulatorServer:
    """A SparkLayer simulator listening on ``host:port`` (``port=0``: any free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        site_id: str,
        client_id: str,
        client_secret: str,
        state_path: Path | None = None,
        token_ttl_seconds: float = 3600,
        standard_tax_rate: float = 20.0,
    ) -> None:
        self._host = host
        self._port = port
        self._state_path = Path(state_path) if state_path is not None else None
        self._credentials = Credentials(site_id, client_id, client_secret)
        self._config = SimulatorConfig(float(token_ttl_seconds), float(standard_tax_rate))
        self._httpd: _SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._saver: StateSaver | None = None
        self.url = ""

    def __repr__(self) -> str:  # no credentials in reprs
        return f"SimulatorServer(url={self.url or 'not started'!r})"

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("The simulator is not started.")
        return self._httpd.server_address[1]

    def start(self) -> None:
        """Load saved state (if any), bind, and serve in a background daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("The simulator is already started.")
        state = None
        if self._state_path is not None:
            state = load_state(self._state_path)
        state = state or PortalState()
        portal = Portal(self._credentials, self._config, state)
        httpd = _SimulatorHTTPServer((self._host, self._port))
        httpd.simulator = Simulator(portal)
        self._httpd = httpd
        self.url = f"http://{self._host}:{httpd.server_address[1]}"
        if self._state_path is not None:
            self._saver = StateSaver(state, self._state_path)
            self._saver.mark_saved(state.version)
            self._saver.start()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sim-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("SparkLayer simulator listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving and, with a ``state_path``, save the state one last time."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_open_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._saver is not None:
            self._saver.stop()
        self._httpd = None
        self._thread = None
        self._saver = None
        logger.info("SparkLayer simulator stopped")

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(
    host: str,
    port: int,
    *,
    site_id: str,
    client_id: str,
    client_secret: str,
    state_path: Path | None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (saving the state)."""
    server = SimulatorServer(
        host,
        port,
        site_id=site_id,
        client_id=client_id,
        client_secret=client_secret,
        state_path=state_path,
    )
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server.start()
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
