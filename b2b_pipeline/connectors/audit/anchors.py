"""The chain head, written outside the audit file so that a rollback of the file is caught.

A keyed seal (``checkpoints.py``) stops someone without the key from rewriting the trail, but
not from cutting it back to an earlier checkpoint: deleting the newest events and checkpoints
leaves a shorter trail whose every seal is still genuine. So after every write that sealed a
checkpoint, the store appends the new head (:class:`ChainHead`: trail id, checkpoint number,
events seq, records seq and the checkpoint's seal) to each *anchor sink*; ``audit verify``
reads the anchors back and requires that every anchored checkpoint is still in the file, with
the same seal. A file that ends before the newest anchor was rolled back or truncated.

Sinks:

- :class:`FileAnchorSink`, the embedded default: an append-only file of JSON lines,
  ``B2B_AUDIT_ANCHORS``, by default ``<B2B_DATA_DIR>/audit.anchors`` next to the key file.
  Opened with ``O_APPEND`` for every line (one ``write`` of a line is atomic between the
  processes that share it). In production make it append-only for the pipeline's user too
  (``chattr +a``), or put it on storage the audit file's editors cannot write.
- For production, any place the audit file's editors cannot rewrite works through the same
  two methods (:class:`AnchorSink`). Two natural ones, not built yet: the ERP (a table
  ``audit_anchors`` written through the ERP connection at the end of each run; ERP
  administrators and the people who can edit the audit file are different people), or the
  portal's sync log (the head in the detail of the sync log entry each run reports to
  SparkLayer, read back through the sync log API). Both keep the anchors off the pipeline's
  machine.

The anchor is written after the transaction commits, never before (an anchor for a write that
rolled back would look like a rollback). A crash between the two leaves the anchors one write
behind the file, which is allowed: the file may be ahead of its anchors, never behind them. A
write that could not be anchored is logged as an error and ``audit verify`` says how many
checkpoints are not anchored yet.

Verify needs only the newest anchor of a trail: each seal chains the one before it, so a file
whose checkpoint matches the newest anchor's seal matches every earlier anchor too. The file
sink therefore reads from the end (a file grown for years costs the same), and the file may be
rotated (moved aside) at any time provided the new file starts with the old one's last line.
It grows by one line (about 300 bytes) per sealed write.

Anchors are not secret (a seal reveals nothing about the key), but they are evidence: their
file is created with mode 0600.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from b2b_pipeline.config.settings import data_dir

ANCHORS_VARIABLE = "B2B_AUDIT_ANCHORS"


@dataclass(frozen=True)
class ChainHead:
    """The newest sealed checkpoint of a trail: what an anchor records."""

    trail_id: str
    checkpoint: int
    events_seq: int
    records_seq: int
    seal: str
    sealed_at: datetime
    audit_file: str | None = None

    def to_json(self) -> str:
        fields = asdict(self)
        fields["sealed_at"] = self.sealed_at.isoformat()
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> ChainHead:
        fields = json.loads(line)
        return cls(
            trail_id=str(fields["trail_id"]),
            checkpoint=int(fields["checkpoint"]),
            events_seq=int(fields["events_seq"]),
            records_seq=int(fields["records_seq"]),
            seal=str(fields["seal"]),
            sealed_at=datetime.fromisoformat(fields["sealed_at"]),
            audit_file=fields.get("audit_file"),
        )


@dataclass(frozen=True)
class AnchorReading:
    """Anchors a sink holds for one trail, and where it found lines it could not read (byte
    offsets, for the file sink)."""

    heads: list[ChainHead] = field(default_factory=list)
    unreadable_at: list[int] = field(default_factory=list)


class AnchorSink(Protocol):
    """Somewhere outside the audit file that keeps every chain head written to it."""

    @property
    def description(self) -> str:
        """Where the anchors are, for a person reading ``audit verify``'s report."""
        ...

    def write(self, head: ChainHead) -> None: ...

    def heads(self, trail_id: str | None, audit_file: str | None = None) -> AnchorReading:
        """At least the newest head of trail ``trail_id`` (verify compares it with the file),
        or (``trail_id`` None) every head naming ``audit_file``."""
        ...


def default_anchor_path() -> Path:
    configured = os.environ.get(ANCHORS_VARIABLE)
    return Path(configured).resolve() if configured else data_dir() / "audit.anchors"


class FileAnchorSink:
    """Chain heads as JSON lines in an append-only file."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_anchor_path()

    def __repr__(self) -> str:
        return f"FileAnchorSink({str(self.path)!r})"

    @property
    def description(self) -> str:
        return f"the anchor file {self.path}"

    def write(self, head: ChainHead) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (head.to_json() + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)

    def heads(self, trail_id: str | None, audit_file: str | None = None) -> AnchorReading:
        """The newest heads of ``trail_id``, read from the end of the file back to the block
        that holds its newest line (so verify stays quick when the file has grown for years);
        with ``trail_id`` None, every head naming ``audit_file`` (a full read, asked only of a
        file that has no checkpoint)."""
        reading = AnchorReading()
        try:
            blocks = _blocks_from_end(self.path)
            for offset, lines in blocks:
                for position, line, length in lines:
                    if not line.strip():
                        continue
                    try:
                        head = ChainHead.from_json(line)
                    except (ValueError, KeyError, TypeError):
                        # The last line may be a write in progress by another process.
                        if offset + position + length < self._size:
                            reading.unreadable_at.append(offset + position)
                        continue
                    if head.trail_id == trail_id or (
                        trail_id is None
                        and audit_file is not None
                        and head.audit_file == audit_file
                    ):
                        reading.heads.append(head)
                if trail_id is not None and reading.heads:
                    break  # this block holds the newest lines of the trail
        except FileNotFoundError:
            return AnchorReading()
        return reading

    @property
    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


_BLOCK_BYTES = 1 << 16


def _blocks_from_end(path: Path) -> Iterator[tuple[int, list[tuple[int, str, int]]]]:
    """Whole lines of ``path``, a block at a time from the end: (block offset, [(offset in the
    block, line, bytes up to the next line)]), newest block first. Out-of-order lines (two
    processes anchoring at once) are always close together, so reading a block at a time finds
    the newest of them."""
    with path.open("rb") as file:
        end = file.seek(0, os.SEEK_END)
        carried = b""
        while end > 0:
            start = max(0, end - _BLOCK_BYTES)
            file.seek(start)
            chunk = file.read(end - start) + carried
            if start > 0:
                cut = chunk.find(b"\n") + 1  # the first line may begin in the block before
                if cut == 0:
                    carried, end = chunk, start
                    continue
                carried, chunk = chunk[:cut], chunk[cut:]
                block_offset = start + cut
            else:
                carried, block_offset = b"", 0
            lines, position = [], 0
            for raw in chunk.split(b"\n"):
                lines.append((position, raw.decode("utf-8", errors="replace"), len(raw) + 1))
                position += len(raw) + 1
            yield block_offset, lines
            end = start


def default_anchor_sinks() -> list[AnchorSink]:
    return [FileAnchorSink()]
