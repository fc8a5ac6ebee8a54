"""A run that cannot reach a system becomes one TRANSPORT exception a person can read, and is
resolved by itself when the same job next succeeds."""

import dagster as dg
import pytest

from b2b_pipeline.defs.monitoring.sensors import (
    transport_failure_sensor,
    transport_recovery_sensor,
)
from b2b_pipeline.defs.resources import AlertsResource, AuditResource

UNREACHABLE_ERP = "postgresql+psycopg://erp_user:s3cretpw@127.0.0.1:1/erp"


def run_customer_sync(pipeline, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = pipeline.definitions().resolve_job_def("customer_sync_job")
    return job.execute_in_process(instance=instance, raise_on_error=False)


def evaluate(sensor, pipeline, instance, result, event) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={
            "audit": AuditResource(path=str(pipeline.audit.path)),
            "alerts": AlertsResource(webhook_url=None),
        },
    )
    if sensor is transport_failure_sensor:
        context = context.for_run_failure()
    sensor(context)


def test_an_unreachable_erp_is_queued_once_as_transport_and_cleared_by_the_next_success(
    pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with monkeypatch.context() as patched:
        patched.setenv("ERP_DATABASE_URL", UNREACHABLE_ERP)
        failed = run_customer_sync(pipeline, instance)
        assert not failed.success
        # Seen twice (a retried run failing again): still one exception, not two.
        for _ in range(2):
            evaluate(
                transport_failure_sensor, pipeline, instance, failed, failed.get_run_failure_event()
            )

    queue = pipeline.audit.exceptions(status="open")
    assert len(queue) == 1
    exception = queue.iloc[0]
    assert (exception["category"], exception["reason_code"]) == ("TRANSPORT", "ERP_UNREACHABLE")
    assert exception["entity_key"] == "customer_sync_job"
    assert "could not reach the ERP database" in exception["message"]
    assert "Nothing was lost" in exception["message"]
    assert "s3cretpw" not in exception["message"]

    recovered = run_customer_sync(pipeline, instance)
    assert recovered.success
    success_event = next(
        e for e in recovered.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS
    )
    evaluate(transport_recovery_sensor, pipeline, instance, recovered, success_event)
    assert pipeline.audit.exceptions(status="open").empty
    assert pipeline.audit.exception(exception["exception_id"])["status"] == "resolved"


def test_a_failure_that_is_not_transport_files_nothing(pipeline, monkeypatch) -> None:
    instance = dg.DagsterInstance.ephemeral()
    pipeline.erp.dispose()
    # Tables missing (the ERP was never initialised) is a set-up problem, not transport: the
    # run's page in the UI says so; the exception queue stays for business outcomes.
    monkeypatch.setenv("ERP_DATABASE_URL", f"sqlite:///{pipeline.data_dir / 'empty.sqlite'}")
    failed = run_customer_sync(pipeline, instance)
    assert not failed.success
    evaluate(transport_failure_sensor, pipeline, instance, failed, failed.get_run_failure_event())
    assert pipeline.audit.exceptions().empty
