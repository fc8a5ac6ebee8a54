"""What the browser tests of the console need besides the product: Debian's Chromium driven by
Playwright, the console served by its own command in its own process, and screenshots kept.

- :func:`launch_chromium`: headless Chromium from the distribution (``B2B_CHROMIUM``, default
  ``/usr/bin/chromium``), never Playwright's own download (``playwright install`` needs the
  internet). The background-networking flags keep Chromium from dialling out: run as root on a
  closed network, its own connections are refused many at a time and slow every page.
- :class:`ConsoleProcess`: ``b2b-pipeline console --host 127.0.0.1 --port N``, as
  ``scripts/start`` runs it, with an environment of the test's systems only.
- :class:`Watched`: a page that records every JavaScript dialog (an ``alert`` an order smuggled
  in would be one), every uncaught error and every Content-Security-Policy refusal, so a test
  can say none happened.
- :func:`screenshot`: a PNG of the viewport into ``build/test-artefacts/screenshots/``, and into
  ``B2B_SCREENSHOTS_DIR`` too when it is set (``B2B_SCREENSHOTS_DIR=docs/screenshots`` refreshes
  the runbook's pictures).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Dialog,
        Error,
        Page,
        Playwright,
        Response,
        ViewportSize,
    )

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "build" / "test-artefacts" / "screenshots"
CHROMIUM = os.environ.get("B2B_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Small enough for the runbook's pictures, wide enough for the queue's message column.
VIEWPORT: ViewportSize = {"width": 1200, "height": 800}
# The product's own settings: the console process gets the test's values and nothing else.
PRODUCT_PREFIXES = ("B2B_", "SPARKLAYER_", "ERP_", "DAGSTER_")


def launch_chromium(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():  # a machine without it fails here, loudly, never skips
        raise FileNotFoundError(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package or set B2B_CHROMIUM"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ConsoleProcess:
    """``b2b-pipeline console`` on a free loopback port, in its own process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        clean = {k: v for k, v in os.environ.items() if not k.startswith(PRODUCT_PREFIXES)}
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "b2b_pipeline.cli.main",
                "console",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env={**clean, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.url}/login", timeout=2).raise_for_status()
                return
            except httpx.TransportError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the console stopped:\n{self.log()}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the console did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: uvicorn shuts down cleanly on it
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class Watched:
    """A page and what went wrong in it: dialogs, uncaught errors, CSP refusals, and every
    response with an error status (a missing stylesheet or icon is a defect too)."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def open(cls, page: Page) -> Watched:
        watched = cls(page)

        def on_dialog(dialog: Dialog) -> None:
            watched.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            # A blocked inline script or style is reported here (and only here).
            # "Failed to load resource" is left to on_response, which knows the address.
            if message.type == "error" and not message.text.startswith("Failed to load resource"):
                watched.errors.append(f"console: {message.text}")

        def on_error(error: Error) -> None:
            watched.errors.append(f"page error: {error}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                watched.failed.append((response.status, response.url))

        page.on("dialog", on_dialog)
        page.on("response", on_response)
        page.on("console", on_console)
        page.on("pageerror", on_error)
        return watched

    def problems(self, *, expected_status: tuple[int, ...] = ()) -> list[str]:
        """Everything that went wrong, but the refusals the test asked for."""
        failed = [f"HTTP {s} {url}" for s, url in self.failed if s not in expected_status]
        return self.dialogs + self.errors + failed


def screenshot(page: Page, name: str) -> Path:
    """The viewport as ``<name>.png`` in the artefacts folder (and B2B_SCREENSHOTS_DIR)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=False, animations="disabled")
    extra = os.environ.get("B2B_SCREENSHOTS_DIR")
    if extra:
        folder = Path(extra)
        if not folder.is_absolute():
            folder = ROOT / folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(target.read_bytes())
    return target
