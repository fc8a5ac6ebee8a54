"""The audit store: hash-chained audit trail, exception queue and finance tables in DuckDB."""

from b2b_pipeline.connectors.audit.store import AuditStore
from b2b_pipeline.connectors.audit.verify import VerifyResult

__all__ = ["AuditStore", "VerifyResult"]
