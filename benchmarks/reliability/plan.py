"""How big each scenario is: the full suite, the ``--quick`` one for CI, and the ``ci`` one the
pytest test runs (every scenario, smallest sizes that still exercise it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool
    seed: int = 7
    # Orders placed per trial (the intake under test).
    orders: int = 1000
    kill_trials: int = 30
    # Kills in a row on one intake before the plain runs that recover, and the sandboxes the
    # trials are spread over (``scenarios/kill.py``).
    kill_chain: int = 3
    kill_parts: int = 2
    # Orders per fault row: the rate is what is under test, and every injected failure costs
    # the client's real backoff (0.5 s doubling), so a bigger batch only adds sleep.
    fault_orders: int = 100
    # Which fault rows (by the start of their name); empty: every kind on its own and all
    # together.
    fault_rows: tuple[str, ...] = ()
    hostile_purchases: int = 10_000
    # How long another writer holds the SQLite ERP (longer than the gateway's 30 s busy wait;
    # 0: no ERP-lock row).
    erp_lock_seconds: float = 90.0
    portal_outage_seconds: float = 45.0
    # How many runs overlap, per row of the overlap scenario.
    overlap_runs: tuple[int, ...] = (2, 3)
    # Which kinds of tampering (``scenarios/tamper.py``); empty: all of them.
    tamper_kinds: tuple[str, ...] = ()
    # kill -9 of the run worker under dg dev: trials, and how long the daemon may take to
    # finish the work alone. The sensor ticks and run monitoring polls every
    # ``daemon_interval_s`` instead of the shipped 30 s (both are settings an operator can
    # change the same way: B2B_ORDER_SENSOR_SECONDS, dagster.yaml); what is under test is that
    # the work finishes with nobody acting, and 30 s would only make each trial a minute longer.
    # Each trial costs about 50 s here (a run worker's start under dg dev, the kill, run
    # monitoring, the retry's start): 30 trials take 26 minutes alone, past the suite's
    # 15-minute bound, so the full suite runs 6 and ``--only daemon --daemon-trials 30`` the
    # 30 (README, "Reliability").
    daemon_trials: int = 6
    daemon_interval_s: int = 5
    daemon_recovery_s: float = 120.0
    # Scenarios (and their parts) run side by side: most of a fault, outage or dg dev scenario
    # is waiting (backoff, a held lock, a stopped portal, a sensor tick), so four lanes on two
    # cores finish sooner without starving the CPU-bound ones (kill, hostile).
    lanes: int = 4

    def __post_init__(self) -> None:
        if self.kill_chain < 1 or self.kill_parts < 1 or self.lanes < 1:
            raise ValueError("kill_chain, kill_parts and lanes must be at least 1")

    @classmethod
    def full(cls, seed: int = 7) -> Plan:
        return cls(quick=False, seed=seed)

    @classmethod
    def small(cls, seed: int = 7) -> Plan:
        return cls(
            quick=True,
            seed=seed,
            orders=200,
            kill_trials=4,
            kill_chain=2,
            kill_parts=1,
            fault_orders=100,
            fault_rows=("timeouts at 20%", "all of these"),
            hostile_purchases=1_500,
            erp_lock_seconds=40.0,
            portal_outage_seconds=20.0,
        )

    @classmethod
    def ci(cls, seed: int = 7) -> Plan:
        """The pytest test's size: every scenario once, as small as still exercises it."""
        return cls(
            quick=True,
            seed=seed,
            orders=40,
            kill_trials=2,
            kill_chain=1,
            kill_parts=1,
            fault_orders=30,
            fault_rows=("all of these",),
            hostile_purchases=300,
            # No ERP lock: to be an outage it must outlast the gateway's 30 s busy wait, and
            # the quick and full sizes have it. The portal stays away longer than the
            # client's retries (about 9 s), so the run it interrupts fails.
            erp_lock_seconds=0.0,
            portal_outage_seconds=12.0,
            overlap_runs=(3,),
            lanes=2,
            tamper_kinds=(
                "edit an event, recompute",
                "cut the newest",
                "queue: resolved, its sealed state",
                "postings: one deleted",
            ),
        )
