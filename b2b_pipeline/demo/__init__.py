"""Deterministic demo data: the reference ERP's merchant and the portal's self-registered buyers.

``seed_erp(gateway)`` fills the ERP; ``seed_portal(base_url)`` registers companies on the
simulator. :data:`NOTABLE_ACCOUNTS` names the accounts a demo or a test can rely on.
"""

from b2b_pipeline.demo.erp_seed import (
    NOTABLE_ACCOUNTS,
    SEED_TIME,
    SeedSummary,
    customer_price_list_code,
    demo_erp_frames,
    seed_erp,
)
from b2b_pipeline.demo.portal_seed import seed_portal, self_registered_companies

__all__ = [
    "NOTABLE_ACCOUNTS",
    "SEED_TIME",
    "SeedSummary",
    "customer_price_list_code",
    "demo_erp_frames",
    "seed_erp",
    "seed_portal",
    "self_registered_companies",
]
