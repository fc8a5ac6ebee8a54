"""Month-end finance outputs: the close pack a finance team files (csv, json, html)."""

from b2b_pipeline.finance.close_pack import (
    CLOSE_PACK_FORMATS,
    daily_totals,
    render_close_pack,
    write_close_pack,
)

__all__ = ["CLOSE_PACK_FORMATS", "daily_totals", "render_close_pack", "write_close_pack"]
