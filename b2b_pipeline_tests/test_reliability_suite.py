"""The reliability suite at its CI size: nothing posted twice, nothing lost, every recovery by
plain runs, every tampering caught, no secret anywhere (``scripts/reliability`` runs the full
size and prints the table; the README holds its last one).

Every scenario drives ``b2b-pipeline`` processes against its own simulator process, so this
test proves the promise the way an operator would see it: ``kill -9`` of runs during intake,
injected portal faults, hostile entries in the purchase list, an ERP locked by another writer
and the portal gone mid-run, overlapping runs with readers, buyers changing orders during a
run, tampering with the audit file, and the secret scan over all of it. Conservation is
counted from the portal and the ERP themselves (``benchmarks/reliability/tally.py``).

Not here, for time: the ``dg dev`` variant of the kill trials (``scripts/reliability --only
daemon``) and the full sizes (30 kills on 10 or more intakes of 1,000 orders, 10,000 hostile
purchases, each fault kind on its own).
"""

from __future__ import annotations

import pytest

from benchmarks.reliability.plan import Plan
from benchmarks.reliability.report import Row, merged, render
from benchmarks.reliability.scenarios import FULL_ONLY, SCENARIOS
from benchmarks.reliability.suite import run_suite
from benchmarks.reliability.tally import Counts


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_scenario_duplicates_loses_needs_a_person_or_leaks_a_secret() -> None:
    rows = run_suite(Plan.ci())
    table = render(rows)
    print(table)

    names = {row.scenario for row in rows}
    assert len(rows) >= len(SCENARIOS) - len(FULL_ONLY) + 1, table  # every scenario and the scan
    assert any(name.startswith("secret scan") for name in names), table
    for row in rows:
        assert row.trials > 0, table
        if not row.scenario.startswith("secret scan"):
            assert row.counts.purchases > 0, table
        assert row.counts.duplicates == 0, table
        assert row.counts.lost == 0, table
        assert row.recovered == row.trials, table
        assert row.ok, table  # no secret found, no failed reader, the untouched trail verified


def test_the_parts_of_a_scenario_add_up_to_one_row_and_any_failed_part_fails_it() -> None:
    # The full suite splits the kill trials over two sandboxes run side by side: the table must
    # show one row with both halves' trials, orders and recoveries, the longer half's time.
    halves = [
        Row("kill", 15, Counts(purchases=5000, posted=5000), 15, 470.0, ["sandbox 1"]),
        Row("fault", 1, Counts(purchases=102, posted=100, filtered=2), 1, 60.0),
        Row("kill", 15, Counts(purchases=5000, posted=4999, lost=1), 14, 480.0, ["sandbox 2"]),
    ]
    kill, fault = merged(halves)

    assert (kill.scenario, fault.scenario) == ("kill", "fault")
    assert (kill.trials, kill.recovered, kill.seconds) == (30, 29, 480.0)
    assert (kill.counts.purchases, kill.counts.posted, kill.counts.lost) == (10000, 9999, 1)
    assert kill.notes == ["sandbox 1", "sandbox 2"]
    assert not kill.ok and fault.ok
    assert halves[0].counts.posted == 5000 and halves[0].notes == ["sandbox 1"]  # not changed
    failed = merged([Row("kill", 1, recovered=1), Row("kill", 1, recovered=1, failed=True)])
    assert failed[0].failed and not failed[0].ok
