"""Monitoring: transport failures filed as exceptions, and resolved on recovery."""

import dagster as dg

from b2b_pipeline.defs.monitoring import sensors

defs = dg.Definitions(sensors=[sensors.transport_failure_sensor, sensors.transport_recovery_sensor])
