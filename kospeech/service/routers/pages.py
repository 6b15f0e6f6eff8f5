"""``GET /``: the enrollment web page, and ``GET /static/{name}``: its script and style sheet.

The page is plain HTML with one script (``static/enroll.js``) that uses only the public ``/v1`` API with the key the
person enters; the server needs no session or cookie for it. The page carries the settings the script needs (limits,
adapter types) as a JSON data block, and a Content-Security-Policy that allows scripts, styles and requests from this
origin only, so no text the API returns can run as code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from string import Template
from typing import Dict, Tuple

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from kospeech.models import registered_adapter_types
from kospeech.service.deps import StateDep
from kospeech.service.errors import ServiceError

__all__ = ["SECURITY_HEADERS", "router"]

router = APIRouter(tags=["page"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

SECURITY_HEADERS: Dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; media-src 'self' blob:; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self)",
}
"""Headers of the page and its files (the key is typed into the page, so it may not be framed or inject code)."""

_ASSET_TYPES = {"enroll.js": "text/javascript; charset=utf-8", "enroll.css": "text/css; charset=utf-8"}


def _load_assets() -> Dict[str, Tuple[bytes, str]]:
    """Each served file's bytes and its ETag (the files ship with the package and do not change while it runs)."""
    assets = {}
    for name in _ASSET_TYPES:
        content = (STATIC_DIR / name).read_bytes()
        assets[name] = (content, '"' + hashlib.sha256(content).hexdigest()[:32] + '"')
    return assets


_ASSETS = _load_assets()
_PAGE = Template((STATIC_DIR / "enroll.html").read_text(encoding="utf-8"))


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def index(state: StateDep) -> HTMLResponse:
    """The enrollment page, with the settings its script needs."""
    settings = state.settings
    config = {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_audio_seconds": settings.max_audio_seconds,
        "min_enrollment_utterances": settings.min_enrollment_utterances,
        "adapter_types": list(registered_adapter_types()),
        "default_adapter_type": settings.default_adapter_type,
    }
    # "<" escaped so that no value can close the data block.
    page = _PAGE.substitute(config=json.dumps(config).replace("<", "\\u003c"))
    return HTMLResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
def static_file(name: str, request: Request) -> Response:
    """One of the page's files; revalidated by ETag (304 when the browser's copy is current)."""
    if name not in _ASSETS:
        raise ServiceError(404, "not_found", f"no file {name!r} here")
    content, etag = _ASSETS[name]
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=_ASSET_TYPES[name], headers=headers)
