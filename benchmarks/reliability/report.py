"""One row per scenario, and the table the suite prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from benchmarks.reliability.tally import Counts

COLUMNS = [
    "scenario",
    "trials",
    "purchases",
    "posted",
    "queued",
    "filtered",
    "duplicates",
    "lost",
    "recovered without manual action",
    "time",
]


@dataclass
class Row:
    scenario: str
    trials: int = 0
    counts: Counts = field(default_factory=Counts)
    recovered: int = 0
    seconds: float = 0.0
    # What else the scenario saw: a write-back left pending, a secret in a log, a reader that
    # failed, the figures behind a loss.
    notes: list[str] = field(default_factory=list)
    # A defect that is not a duplicate or a loss but still fails the suite (a leaked secret).
    failed: bool = False

    @property
    def ok(self) -> bool:
        return (
            not self.failed
            and self.counts.duplicates == 0
            and self.counts.lost == 0
            and self.recovered == self.trials
        )

    def cells(self) -> list[str]:
        c = self.counts
        return [
            self.scenario,
            str(self.trials),
            f"{c.purchases:,}",
            f"{c.posted:,}",
            f"{c.queued:,}",
            f"{c.filtered:,}",
            str(c.duplicates),
            str(c.lost),
            f"{self.recovered}/{self.trials}",
            f"{self.seconds:.0f} s",
        ]


def merged(rows: list[Row]) -> list[Row]:
    """Rows of the same scenario (parts of one scenario run side by side) as one row: their
    trials, counts and recoveries added, the longest part's time, every note."""
    out: dict[str, Row] = {}
    for row in rows:
        into = out.get(row.scenario)
        if into is None:
            out[row.scenario] = Row(
                row.scenario,
                row.trials,
                dataclasses.replace(row.counts),
                row.recovered,
                row.seconds,
                list(row.notes),
                row.failed,
            )
            continue
        into.trials += row.trials
        into.counts.add(row.counts)
        into.recovered += row.recovered
        into.seconds = max(into.seconds, row.seconds)
        into.notes.extend(row.notes)
        into.failed = into.failed or row.failed
    return list(out.values())


def render(rows: list[Row]) -> str:
    from tabulate import tabulate

    table = tabulate(
        [row.cells() for row in rows],
        headers=COLUMNS,
        tablefmt="github",
        colalign=("left", *["right"] * (len(COLUMNS) - 1)),
        disable_numparse=True,
    )
    notes = [f"- {row.scenario}: {note}" for row in rows for note in row.notes]
    return table + ("\n\n" + "\n".join(notes) if notes else "")
