"""The SparkLayer Sync Logging body: master-data sync health, shown inside the portal too.

``PUT /api/v1/sync-log/{integration}/{data_type}`` takes ``{started_full_sync, last_full_sync,
last_full_sync_succeeded, errors: [{external_id, message, external_url?}]}`` with at most 5000
errors and each ``external_id`` once (contracts/sparklayer-api.md §6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

SYNC_LOG_MAX_ERRORS = 5000
SYNC_LOG_MAX_MESSAGE = 2000
# The portal's limit on an external_id (contracts/sparklayer-api.md; the simulator enforces it).
SYNC_LOG_MAX_EXTERNAL_ID = 64


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the pipeline's naive timestamps are UTC
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sync_log_body(
    *,
    started_at: datetime,
    finished_at: datetime,
    records_failed: int,
    errors: pd.DataFrame | None = None,
    completed: bool = True,
) -> dict[str, Any]:
    """The sync log body for one master-data sync.

    ``last_full_sync_succeeded`` is true only when the sync ran to the end (``completed``) and
    no record failed (``records_failed``: records held back or refused by the portal).
    ``errors``: rows with ``external_id`` (or the exception queue's
    ``entity_key``) and ``message``, optionally ``external_url``. A record with several problems
    is listed once with its messages joined; beyond 5000 records the last entry says how many
    more there are, so the portal never shows a silently shortened list.
    """
    entries: list[dict[str, Any]] = []
    if errors is not None and len(errors):
        frame = errors.rename(columns={"entity_key": "external_id"})
        if "external_url" not in frame:
            frame = frame.assign(external_url=None)
        frame = frame.assign(
            external_id=frame["external_id"].astype(str), message=frame["message"].astype(str)
        )
        # One key over the portal's limit (a price row "list/SKU" with a long SKU) would make
        # the portal refuse the whole report, leaving the last one, perhaps "succeeded", on
        # show. Cut such keys visibly and put the full key in front of the message.
        too_long_id = frame["external_id"].str.len() > SYNC_LOG_MAX_EXTERNAL_ID
        if too_long_id.any():
            frame.loc[too_long_id, "message"] = (
                frame.loc[too_long_id, "external_id"] + ": " + frame.loc[too_long_id, "message"]
            )
            frame.loc[too_long_id, "external_id"] = (
                frame.loc[too_long_id, "external_id"].str.slice(0, SYNC_LOG_MAX_EXTERNAL_ID - 1)
                + "…"
            )
        per_record = frame.groupby("external_id", sort=False).agg(
            message=("message", lambda m: " | ".join(dict.fromkeys(m))),
            external_url=("external_url", "first"),
        )
        per_record = per_record.reset_index()
        left_off = len(per_record) - SYNC_LOG_MAX_ERRORS
        if left_off > 0:
            per_record = per_record.iloc[:SYNC_LOG_MAX_ERRORS].copy()
            last = per_record.index[-1]
            per_record.at[last, "message"] = (
                str(per_record.at[last, "message"])
                + f" | and {left_off} more records failed: see the exception queue"
            )
        # The portal keeps messages to 2000 characters; cut ours visibly rather than be refused.
        too_long = per_record["message"].str.len() > SYNC_LOG_MAX_MESSAGE
        per_record.loc[too_long, "message"] = (
            per_record.loc[too_long, "message"].str.slice(0, SYNC_LOG_MAX_MESSAGE - 1) + "…"
        )
        entries = [
            {
                str(key): value
                for key, value in record.items()
                if value is not None and value == value
            }
            for record in per_record.to_dict("records")
        ]
    return {
        "started_full_sync": _iso(started_at),
        "last_full_sync": _iso(finished_at),
        "last_full_sync_succeeded": bool(completed and records_failed == 0),
        "errors": entries,
    }
