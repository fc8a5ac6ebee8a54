"""Demo data for the portal side: companies that registered on the portal by themselves.

They have no ERP account yet (no ``external_id``, no ``accounting_id``), which is what an
account manager meets in real life: an order from one of them is an ``UNMAPPED_ACCOUNT``
exception until someone maps it (or the ``auto_create`` policy creates the ERP account).

This calls the simulator's test-harness endpoint ``POST /_sim/customers/register`` directly
with ``requests``: it plays the buyer, not the pipeline, so it does not go through the
SparkLayer client.
"""

from __future__ import annotations

from typing import Any

import requests

from b2b_pipeline.demo.names import SELF_REGISTERED, email_domain

_TIMEOUT_S = 10.0


def self_registered_companies(companies: int = 3) -> list[dict[str, str]]:
    """The registration forms of the demo's self-registered companies (deterministic)."""
    forms = []
    for index in range(companies):
        company, first, last = SELF_REGISTERED[index % len(SELF_REGISTERED)]
        cycle = index // len(SELF_REGISTERED)
        if cycle:
            company = f"{company} ({cycle + 1})"
        forms.append(
            {
                "company_name": company,
                "email": f"{first.lower()}.{last.lower()}@{email_domain(company)}",
                "first_name": first,
                "last_name": last,
            }
        )
    return forms


def seed_portal(base_url: str, *, companies: int = 3) -> list[dict[str, Any]]:
    """Register ``companies`` self-registered companies on the simulator; returns the customers.

    Each entry is the customer as the portal returns it (``GET /api/v2/customers/...`` shape).
    Raises ``requests.HTTPError`` when the simulator refuses a registration.
    """
    url = f"{base_url.rstrip('/')}/_sim/customers/register"
    created = []
    with requests.Session() as session:
        for form in self_registered_companies(companies):
            response = session.post(url, json=form, timeout=_TIMEOUT_S)
            response.raise_for_status()
            created.append(response.json())
    return created
