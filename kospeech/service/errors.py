"""Every error the API answers is JSON ``{"error": {"code": str, "message": str}}`` (SPEC section 7).

Handlers turn :class:`ServiceError` (raised by the service), FastAPI's request validation errors (422), Starlette's
HTTP errors (404 for an unknown route, 405, 413 from the body limit) and the library's input errors into that shape;
a full or read-only disk (the data folder's or the database's) is 507 ``insufficient_storage`` or 503
``storage_unavailable``, with ``Retry-After``; anything else is a server fault: logged with its traceback, answered 500
without internals.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from kospeech.errors import InputError
from kospeech.service.storage import storage_fault

__all__ = ["ServiceError", "error_body", "install_error_handlers"]

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


_STORAGE_FAULTS = {
    "full": (507, "insufficient_storage", "the server's storage is full; try again later"),
    "read_only": (503, "storage_unavailable", "the server's storage cannot be written now; try again later"),
}
"""How a :func:`~kospeech.service.storage.storage_fault` is answered: status, code, message."""


class ServiceError(Exception):
    """An answer other than success, with its status, a stable machine-readable code and a message for people.

    Args:
        status: the HTTP status.
        code: a short snake_case code (``"user_not_found"``).
        message: what went wrong and, where it helps, what to do.
        headers: extra response headers (``WWW-Authenticate`` for 401).
    """

    def __init__(self, status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> Dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message}}


_FILE_AS_TEXT = "must be sent as a file part (a multipart part with a filename, as curl -F 'file=@clip.wav' sends)"
"""Starlette reads a part without a filename as a text field: what a client sending one is told."""


_LISTED_VALIDATION_ERRORS = 10
"""The most problems a 422's message lists (an object of thousands of unknown fields would be answered in megabytes)."""


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    parts = []
    for error in errors[:_LISTED_VALIDATION_ERRORS]:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":  # its location is a character offset, not a field
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            parts.append(f"the body is not valid JSON ({reason} at character {location[-1] if location else 0})")
            continue
        message = error.get("msg", "invalid")
        if "Expected UploadFile" in message:
            message = _FILE_AS_TEXT
        parts.append(f"{'.'.join(location) or 'request'}: {message}")
    unlisted = len(errors) - _LISTED_VALIDATION_ERRORS
    if unlisted > 0:
        parts.append(f"and {unlisted} more")
    return "; ".join(parts) or "invalid request"


def _expected_media_type(request: Request) -> Optional[str]:
    """The body the matched endpoint reads (``multipart/form-data`` or ``application/json``) when the request was
    sent as another media type, else ``None``."""
    route = request.scope.get("route")
    body_params = getattr(getattr(route, "dependant", None), "body_params", None)
    if not body_params:
        return None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if any(isinstance(param.field_info, params.Form) for param in body_params):  # File is a Form
        expected, accepted = "multipart/form-data", {"multipart/form-data", "application/x-www-form-urlencoded"}
    else:
        expected, accepted = "application/json", {"application/json", ""}
    if media_type in accepted or media_type.endswith("+json") and expected == "application/json":
        return None
    return expected


def _path_without_slash_exists(request: Request) -> bool:
    """Whether the request's path, less its trailing slash, is a route (slashes are not redirected)."""
    path = request.scope["path"]
    if not path.endswith("/") or path == "/":
        return False
    scope = {**request.scope, "path": path.rstrip("/")}
    return any(route.matches(scope)[0] is not Match.NONE for route in request.app.router.routes)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON shape above."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        expected = _expected_media_type(request)
        if expected is not None:
            sent = request.headers.get("content-type") or "no content type"
            message = f"the body must be sent as {expected}, not {sent}"
            return JSONResponse(error_body("unsupported_media_type", message), status_code=415)
        return JSONResponse(error_body("invalid_request", _validation_message(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)  # a 405's Allow: the app's request guard completes it
        if exc.status_code == 404 and _path_without_slash_exists(request):
            message = f"{message}: {request.scope['path']!r} ends with a slash; the API's paths do not"
        elif exc.status_code == 400 and message.startswith("Part exceeded maximum size"):
            message = f"{message} (a text field; a file {_FILE_AS_TEXT})"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(InputError)
    async def _input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(error_body("invalid_input", str(exc)), status_code=422)

    def storage_answer(request: Request, exc: Exception) -> Optional[JSONResponse]:
        fault = storage_fault(exc)
        if fault is None:
            return None
        # the operator's to fix, and the client's to retry: said as such, not as a bug
        logger.error("storage %s in %s %s: %s", fault.replace("_", "-"), request.method, request.url.path, exc)
        status, code, message = _STORAGE_FAULTS[fault]
        return JSONResponse(error_body(code, message), status_code=status, headers={"Retry-After": "60"})

    # The errors a storage fault arrives as are answered inside the middleware (the request guard then logs and counts
    # the status sent); the handler for Exception runs outside it, where the guard can only count a 500.
    async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
        answer = storage_answer(request, exc)
        if answer is None:
            raise exc  # a server fault: the outermost handler logs it and answers 500
        return answer

    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(SQLAlchemyError, _storage_error)

    @app.exception_handler(Exception)
    async def _server_fault(request: Request, exc: Exception) -> JSONResponse:
        answer = storage_answer(request, exc)  # a storage fault wrapped in another error
        if answer is not None:
            return answer
        logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
