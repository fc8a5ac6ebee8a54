"""Who may do what in the console: four roles, one table.

| action                                              | viewer | operations | finance | admin |
|-----------------------------------------------------|--------|------------|---------|-------|
| see every page, download the close pack             |  yes   |    yes     |   yes   |  yes  |
| retry an exception (one, or a selection)            |        |    yes     |   yes   |  yes  |
| ignore an exception, with a reason                  |        |    yes     |   yes   |  yes  |
| mark an exception resolved, with a note             |        |    yes     |   yes   |  yes  |
| approve an account mapping (UNMAPPED/UNKNOWN_ACCOUNT) |      |    yes     |   yes   |  yes  |
| approve posting on hold (ACCOUNT_ON_HOLD)           |        |    yes     |   yes   |  yes  |
| approve a pricing difference (PRICE_MISMATCH)       |        |            |   yes   |  yes  |
| start a month-end reconciliation run                |        |            |   yes   |  yes  |

Why: a price difference changes what the customer is invoiced, so only finance decides it
(the runbook names finance for ``PRICE_MISMATCH``). Mapping an account and posting a held order
on hold are account-manager and credit-control decisions, both in operations. Every other reason is
fixed at its cause and retried (``flows.exception_actions`` refuses to approve it). Ignoring
closes an order for good, so a viewer may not; operations and finance both may, as the runbook's
routines have each of them ignore what needs no action. Users are added with
``b2b-pipeline console add-user`` by whoever runs the machine; there is no user admin page.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATIONS = "operations"
    FINANCE = "finance"
    ADMIN = "admin"


class Permission(StrEnum):
    RETRY = "retry"
    IGNORE = "ignore"
    RESOLVE = "resolve"
    APPROVE_ACCOUNT = "approve an account mapping"
    APPROVE_ON_HOLD = "approve posting on hold"
    APPROVE_PRICING = "approve a pricing difference"
    RECONCILE = "start a reconciliation run"


_OPERATIONS_UP = frozenset({Role.OPERATIONS, Role.FINANCE, Role.ADMIN})
_FINANCE_UP = frozenset({Role.FINANCE, Role.ADMIN})

PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.RETRY: _OPERATIONS_UP,
    Permission.IGNORE: _OPERATIONS_UP,
    Permission.RESOLVE: _OPERATIONS_UP,
    Permission.APPROVE_ACCOUNT: _OPERATIONS_UP,
    Permission.APPROVE_ON_HOLD: _OPERATIONS_UP,
    Permission.APPROVE_PRICING: _FINANCE_UP,
    Permission.RECONCILE: _FINANCE_UP,
}

# The approval each reason code takes, and the permission it needs. A reason not listed is
# settled by fixing its cause and retrying (the runbook says where), never by an approval.
APPROVALS: dict[str, Permission] = {
    "PRICE_MISMATCH": Permission.APPROVE_PRICING,
    "UNMAPPED_ACCOUNT": Permission.APPROVE_ACCOUNT,
    "UNKNOWN_ACCOUNT": Permission.APPROVE_ACCOUNT,
    "ACCOUNT_ON_HOLD": Permission.APPROVE_ON_HOLD,
}


def may(role: str | Role, permission: Permission) -> bool:
    """Whether ``role`` may do ``permission`` (an unknown role may do nothing)."""
    try:
        return Role(role) in PERMISSIONS[permission]
    except ValueError:
        return False


def approval_permission(reason_code: str) -> Permission | None:
    """The permission approving an exception of ``reason_code`` needs; None: not approvable."""
    return APPROVALS.get(reason_code)


def roles_allowed(permission: Permission) -> list[str]:
    """The roles that may, in the table's order (for messages: "needs finance or admin")."""
    return [role.value for role in Role if role in PERMISSIONS[permission]]
