"""Runs Dagster jobs in-process for the command line, on the same definitions as the UI.

A CLI run goes through exactly the assets, checks and resources the schedules and sensors use,
and, when ``DAGSTER_HOME`` is set, is recorded in the same instance, so it shows in the UI.

What the person at the terminal sees is the summary and, when a step fails, one line naming
the system and the problem: Dagster's own event log (every step, and a traceback on failure)
is shown only with ``b2b-pipeline -v``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from tqdm import tqdm


@dataclass
class JobSummary:
    success: bool
    run_id: str
    # asset name -> its materialization metadata (numbers and short texts)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    # check name -> what it says (its description), for the checks that failed
    check_problems: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    # The failed step and the error class the failure came from, e.g. "PortalUnreachableError".
    values: dict[str, Any] = field(default_factory=dict)


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _plain(value: Any) -> Any:
    inner = getattr(value, "value", value)
    if isinstance(inner, int | float | str | bool) or inner is None:
        return inner
    if isinstance(inner, dict | list):
        return inner
    return str(inner)


def _subclass_names(*bases: type) -> set[str]:
    names: set[str] = set()
    pending = list(bases)
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def _system_error_names() -> set[str]:
    """Our connectors' typed errors: their messages are already one line for a person, name the
    system (SparkLayer, the ERP database, the mapping file) and never carry a secret."""
    from b2b_pipeline.config.mappings import InvalidMappings
    from b2b_pipeline.connectors.erp.errors import ErpError
    from b2b_pipeline.connectors.sparklayer.errors import SparkLayerError

    return _subclass_names(ErpError, SparkLayerError, InvalidMappings)


def _one_line(error: Any) -> str:
    """A SerializableErrorInfo's message without the ``module.Class: `` prefix, on one line."""
    text = (error.message or "").strip()
    prefix = f"{error.cls_name}: "
    if error.cls_name and prefix in text[: len(prefix) + 200]:
        text = text.split(prefix, 1)[1]
    return " ".join(text.split())


def describe_step_failure(error: Any) -> tuple[str, str | None]:
    """(one line for a person, the class of the error it came from) for a step failure.

    Dagster wraps what user code raised in ``DagsterExecutionStepExecutionError`` ("Error
    occurred while executing op ...:"), which says nothing about the cause; the cause chain
    holds our connector's typed error, whose message is the one to show.
    """
    known = _system_error_names()
    chain: list[Any] = []
    seen = error
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.cause or seen.context
    for link in chain:
        if link.cls_name in known:
            return _one_line(link), link.cls_name
    # Not one of ours: the innermost error is the user-code one (the outer ones are Dagster's).
    inner = chain[-1]
    return f"{inner.cls_name}: {_one_line(inner)}", inner.cls_name


def _quiet_loggers(run_config: dict[str, Any]) -> dict[str, Any]:
    """Silence Dagster's console event log unless the CLI runs verbose (``-v``)."""
    if logging.getLogger().isEnabledFor(logging.INFO) or "loggers" in run_config:
        return run_config
    return {**run_config, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@contextmanager
def _progress(instance: dg.DagsterInstance, run_id: str, steps: int, label: str) -> Iterator[None]:
    """A progress bar of finished steps for a person at a terminal (tqdm; nothing when the
    output is a pipe or a file, so scripts and ``--format json`` stay clean)."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    bar = tqdm(total=steps, desc=label, unit="step", file=sys.stderr, leave=False)

    def watch() -> None:
        seen = 0
        while not done.wait(0.5):
            try:
                finished = len(
                    instance.get_records_for_run(
                        run_id=run_id,
                        of_type={
                            dg.DagsterEventType.STEP_SUCCESS,
                            dg.DagsterEventType.STEP_FAILURE,
                            dg.DagsterEventType.STEP_SKIPPED,
                        },
                        limit=steps,
                    ).records
                )
            except Exception:  # progress is a courtesy; never disturb the run
                continue
            bar.update(finished - seen)
            seen = finished

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=2)
        bar.close()


def run_job(
    job_name: str,
    run_config: dict[str, Any] | None = None,
    *,
    partition_key: str | None = None,
    outputs: tuple[str, ...] = (),
) -> JobSummary:
    """Run a job of the definitions in this process; ``outputs`` names assets whose values
    the caller wants back (e.g. the reconciliation for the close pack)."""
    from b2b_pipeline.cli import paths
    from b2b_pipeline.definitions import build_definitions

    paths.settings()  # the data folder pinned for the resources the definitions build

    # Built per call, not the module-level ``defs``: the resources read the environment when
    # they are built (the audit file, the mapping file), so a process that points the
    # environment elsewhere (a test, a script driving several sites) must get those systems.
    defs = build_definitions()

    job = defs.resolve_job_def(job_name)
    run_id = str(uuid.uuid4())  # known before the run starts, so progress can follow it
    with _instance() as instance, _progress(instance, run_id, len(job.graph.nodes), job_name):
        result = job.execute_in_process(
            run_config=_quiet_loggers(run_config or {}),
            instance=instance,
            raise_on_error=False,
            partition_key=partition_key,
            run_id=run_id,
        )
    summary = JobSummary(success=result.success, run_id=result.run_id)
    if result.success:
        summary.values = {name: result.output_for_node(name) for name in outputs}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        summary.assets[name] = {k: _plain(v) for k, v in materialization.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        summary.checks[name] = evaluation.passed
        if not evaluation.passed:
            summary.check_problems[name] = evaluation.description or ""
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure and e.step_failure_data]
        first = next((e for e in failures if e.step_failure_data.error), None)
        if first is None:
            summary.error = "the run failed"
        else:
            message, _ = describe_step_failure(first.step_failure_data.error)
            summary.error = f"{message} (step {first.step_key})"
    return summary


def run_retry(job_name: str, params: Mapping[str, Any]) -> JobSummary:
    """The ``run_job`` port of ``flows.exception_actions.retry_exceptions``: runs the job a
    retry needs, ``params`` = ``{"purchase_ids": [...]}`` for the order intake (replay exactly
    those purchases) or ``{}``."""
    run_config: dict[str, Any] = {}
    purchase_ids = list(params.get("purchase_ids") or [])
    if purchase_ids:
        from b2b_pipeline.defs.orders.assets import retry_run_config

        run_config = retry_run_config(purchase_ids)
    return run_job(job_name, run_config)
