"""The Columns tab of the ERP extracts (customers here, products, price lists and stock in
their own folders): ``dagster/column_schema`` built from each extract's Pandera model, so the
table the UI shows is the one the rules validate.

[Shared by the three master-data folders; it moves to a ``defs``-wide module if another folder
needs it.]
"""

from __future__ import annotations

import dagster as dg
import pandera.pandas as pa

from b2b_pipeline.domain.schemas.master_data import column_schema


def column_schema_metadata(model: type[pa.DataFrameModel]) -> dict[str, dg.TableSchema]:
    """``{"dagster/column_schema": ...}`` for a Pandera model (names, types, descriptions)."""
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=name, type=kind, description=description)
                for name, kind, description in column_schema(model)
            ]
        )
    }
