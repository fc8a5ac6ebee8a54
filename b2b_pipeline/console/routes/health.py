"""The sync health page (``console.sync_health`` gathers it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from b2b_pipeline.console.app import console_of, render
from b2b_pipeline.console.sync_health import read_sync_health

router = APIRouter()


@router.get("/sync-health", response_class=HTMLResponse)
def sync_health(request: Request) -> Response:
    flows = read_sync_health(console_of(request).store())
    return render(request, "sync_health.html", {"flows": flows})
