"""``GET /``: a placeholder page (the enrollment web page comes with a later issue)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(tags=["page"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kospeech</title></head>
<body><h1>kospeech personalization service</h1>
<p>The enrollment page is not built yet. The API is described at <a href="/docs">/docs</a>.</p></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    """A minimal page pointing to the API documentation."""
    return HTMLResponse(_PAGE)
