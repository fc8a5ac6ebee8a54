"""Saving the simulated portal to disk, so a demo keeps its data across restarts.

Format: ``marshal``, chosen after measuring a million price rows (5 lists x 200,000 SKUs, two
breaks each): JSON took 1.6-2.4 s to write and 4.4-7.7 s to read, pickle 1.9-2.9 s to write
(0.4 s in its deprecated memo-less mode) and 1.5-3.5 s to read, marshal 0.16 s to write and
about 1.8 s to read. The state is plain dicts, lists, tuples, strings and numbers, which is
exactly what marshal handles; unlike pickle it cannot run code when read. Its format is tied
to the Python version, so a file written by another version is set aside and the simulator
starts empty (this is test and demo data, not a system of record).

Writes are atomic (temporary file, then ``os.replace``). The snapshot is taken under the state
lock as shallow copies (milliseconds); serialising and writing happen outside it.
"""

from __future__ import annotations

import gc
import logging
import marshal
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from b2b_pipeline.simulator.state import PortalState

logger = logging.getLogger(__name__)

# 2: contract v2 purchases (no top-level id) and their transactions; a version 1 file is set
# aside rather than served in the old shapes.
FORMAT_VERSION = 2
MIN_SAVE_INTERVAL_SECONDS = 5.0
# A save may take at most about this share of wall time when the state is large and busy.
MAX_SAVE_SHARE = 0.1


def save_state(state: PortalState, path: Path) -> int:
    """Write ``state`` to ``path`` atomically; returns the state version that was saved."""
    with state.lock:
        version = state.version
        snapshot = state.snapshot()
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "python": list(sys.version_info[:2]),
        "state": snapshot,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(marshal.dumps(document))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return version


def load_state(path: Path) -> PortalState | None:
    """The saved state, or ``None`` when there is none or it cannot be read (set aside)."""
    if not path.exists():
        return None
    # Reading creates millions of small objects; the cyclic collector would rescan them all
    # again and again (it triples the load time) while none of them can form a cycle.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        # loads() on the whole file: marshal.load() on a file object reads in small pieces
        # and is several times slower on a large state.
        document = marshal.loads(path.read_bytes())
        if document.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT_VERSION}")
        return PortalState.from_snapshot(document["state"])
    except (ValueError, EOFError, TypeError, KeyError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.unreadable")
        os.replace(path, aside)
        logger.warning(
            "Simulator state file %s could not be read (%s); moved it to %s and started empty.",
            path,
            exc,
            aside,
        )
        return None
    finally:
        if was_enabled:
            gc.enable()


class StateSaver:
    """Saves the state in the background when it changed, at most every few seconds.

    The pause between saves grows with the time a save takes (at most ``MAX_SAVE_SHARE`` of
    wall time), so a million-row state under a benchmark's write load is not saved back to
    back.
    """

    def __init__(self, state: PortalState, path: Path) -> None:
        self._state = state
        self._path = path
        self._saved_version = -1
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sim-state-saver", daemon=True)

    def mark_saved(self, version: int) -> None:
        self._saved_version = version

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the background saves and write a last one if anything changed."""
        self._stop.set()
        self._thread.join(timeout=60)
        self.save_if_changed()

    def save_if_changed(self) -> float:
        """Save when the state changed since the last save; returns the seconds it took."""
        with self._lock:
            state = self._state
            if state.version == self._saved_version:
                return 0.0
            started = time.perf_counter()
            self._saved_version = save_state(state, self._path)
            return time.perf_counter() - started

    def _run(self) -> None:
        pause = MIN_SAVE_INTERVAL_SECONDS
        while not self._stop.wait(pause):
            try:
                took = self.save_if_changed()
            except OSError:
                logger.exception("Saving the simulator state to %s failed", self._path)
                took = 0.0
            pause = max(MIN_SAVE_INTERVAL_SECONDS, took / MAX_SAVE_SHARE)
