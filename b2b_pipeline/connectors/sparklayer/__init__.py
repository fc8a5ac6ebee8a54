"""The SparkLayer connector: the API client, its typed errors, and its wire assumptions."""

from b2b_pipeline.connectors.sparklayer.client import (
    BatchResult,
    ClientStats,
    RejectedRow,
    SparkLayerClient,
)

__all__ = ["BatchResult", "ClientStats", "RejectedRow", "SparkLayerClient"]
