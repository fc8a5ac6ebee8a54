"""Runs that could not reach a system become TRANSPORT exceptions a person can read.

A run that fails because SparkLayer or the ERP could not be reached after the client's retries
loses nothing (the order cursor and the price snapshot only move after success, and Dagster
retries the run), but operations must know when it persists. ``transport_failure_sensor`` files
one exception per job (category TRANSPORT, deduplicated while it lasts) and sends the alert
digest; ``transport_recovery_sensor`` resolves it when the same job next succeeds. What is
filed and resolved is ``flows.exception_actions``'s; this module reads Dagster's failure.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from b2b_pipeline.defs.resources import AlertsResource, AuditResource
from b2b_pipeline.flows.exception_actions import clear_transport_failure, file_transport_failure

# Error classes (by name: the daemon sees serialised errors) and what they mean for a person.
PORTAL_ERRORS = {"PortalUnreachableError", "AuthenticationError"}
ERP_ERRORS = {"ErpUnreachableError"}


def _chain(error: Any) -> Iterator[Any]:
    while error is not None:
        yield error
        yield from _chain(error.context) if error.context is not None else iter(())
        error = error.cause


def transport_reason(errors: Iterable[Any]) -> tuple[str, str] | None:
    """(reason code, the system's own one-line message) when a failure was a transport one."""
    for error in errors:
        for link in _chain(error):
            name = link.cls_name or ""
            line = (link.message or "").strip().splitlines()[-1:] or [""]
            if name in PORTAL_ERRORS:
                return "PORTAL_UNREACHABLE", line[0]
            if name in ERP_ERRORS:
                return "ERP_UNREACHABLE", line[0]
    return None


@dg.run_failure_sensor(
    name="transport_failure_sensor",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Files a TRANSPORT exception (and one alert) when a run failed because the "
    "portal or the ERP could not be reached after retries.",
)
def transport_failure_sensor(
    context: dg.RunFailureSensorContext, audit: AuditResource, alerts: AlertsResource
) -> None:
    errors = [
        e.step_failure_data.error
        for e in context.get_step_failure_events()
        if e.step_failure_data is not None
    ]
    errors.append(getattr(context.failure_event.event_specific_data, "error", None))
    found = transport_reason([e for e in errors if e is not None])
    if found is None:
        return  # not a transport failure: the run's own page in the UI says what went wrong
    reason, detail = found
    file_transport_failure(
        audit.store,
        alerts.notifier,
        job=context.dagster_run.job_name,
        run_id=context.dagster_run.run_id,
        reason_code=reason,
        detail=detail,
    )


@dg.run_status_sensor(
    name="transport_recovery_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resolves a job's TRANSPORT exception once that job succeeds again.",
)
def transport_recovery_sensor(context: dg.RunStatusSensorContext, audit: AuditResource) -> None:
    clear_transport_failure(
        audit.store, job=context.dagster_run.job_name, run_id=context.dagster_run.run_id
    )
