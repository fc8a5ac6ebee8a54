"""Typed errors of the ERP gateway.

Every failure of an ERP call surfaces as one :class:`ErpError` subclass with a one-line message
a person can act on (which database, what went wrong, what state it left), so the CLI prints it
and exits 2 instead of printing a traceback. Database URLs in messages always have their
password masked.
"""

from __future__ import annotations


class ErpError(Exception):
    """An ERP call failed; the message is one line, written for the person running the job."""


class ErpConfigurationError(ErpError):
    """``ERP_DATABASE_URL`` is not a usable SQLAlchemy URL (nothing was contacted)."""


class ErpUnreachableError(ErpError):
    """The ERP database could not be reached or used (down, wrong address, locked too long).

    Nothing was written by the call that raised it; retrying later is safe.
    """


class ErpRejectedError(ErpError):
    """The ERP refused a write (a constraint was violated); the whole batch was rolled back."""
