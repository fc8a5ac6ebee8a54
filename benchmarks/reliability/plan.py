"""How big each scenario is: the full suite, or the ``--quick`` one for CI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool
    seed: int = 7
    # Orders placed per trial (the intake under test).
    orders: int = 1000
    kill_trials: int = 30
    # Orders per fault row: the rate is what is under test, and every injected failure costs
    # the client's real backoff (0.5 s doubling), so a bigger batch only adds sleep.
    fault_orders: int = 300
    hostile_purchases: int = 10_000
    # How long another writer holds the SQLite ERP (longer than the gateway's 30 s busy wait).
    erp_lock_seconds: float = 90.0
    portal_outage_seconds: float = 30.0

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
            fault_orders=100,
            hostile_purchases=1_500,
            erp_lock_seconds=40.0,
            portal_outage_seconds=8.0,
        )
