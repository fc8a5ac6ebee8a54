"""The reliability suite: the order path under faults, load and hostile input, in figures.

Run with ``scripts/reliability`` (``--quick`` for a smaller version, ``--ci`` for the size the
pytest test runs, ``--only NAME`` for one scenario). Every scenario treats the pipeline as a
black box, the way an operator and the schedules use it: ``b2b-pipeline`` processes (``run``,
and readers such as ``exceptions list``) against a SparkLayer simulator in its own process, a
SQLite reference ERP and a DuckDB audit file in a temporary folder, with faults injected
through the simulator's ``/_sim/faults`` endpoint, a fault proxy in front of it
(``proxy.py``), ``kill -9``, another SQLite writer, the portal being stopped, or ``dg dev``
with its daemon (``scenarios/daemon.py``). Nothing here imports the Dagster layer, so the
suite stays valid while the definitions are refactored.

What is counted (``tally.py``), per scenario, from the systems themselves and not from the
pipeline's own bookkeeping where a system can say:

- **posted**: ERP sales orders, by ``external_ref`` (the portal purchase id);
- **queued**: purchases with an open (or approved, awaiting retry) exception in the queue;
- **filtered**: purchases the pipeline recorded as ``filtered`` (quotes, carts, unconfirmed);
- **duplicates**: ``external_ref`` values present more than once in the ERP;
- **lost**: live portal orders (type ``order``, not cancelled, read from the portal) that are
  neither posted nor queued after the recovery run;
- **recovered**: trials in which the runs that followed the fault (plain ``b2b-pipeline run``,
  what the schedules do; no operator action) ended with nothing lost and a last run that
  exited 0.

- **time**: wall-clock seconds of the scenario (scenarios, and the parts some split into, run
  side by side in ``plan.lanes`` threads, so the times overlap and add up to more than the
  suite's; a scenario split into parts shows its longest part).

The tampering row counts, in "recovered", the kinds of tampering ``audit verify`` caught; the
secret-scan row counts there the sandboxes in which neither the client secret nor any token
issued to the pipeline was found (``secrets.py``).

The suite exits 1 when any row has a duplicate or a lost order, needed a manual step, missed a
tampering or found a secret.
"""
