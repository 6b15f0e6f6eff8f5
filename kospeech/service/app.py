"""The FastAPI application: :func:`create_app` builds it from the settings (SPEC section 7).

The app opens its :class:`~kospeech.service.state.ServiceState` in its lifespan (database migration, base model,
batcher, in-process worker) and closes it after the server has finished its in-flight requests (uvicorn's graceful
shutdown). A pure ASGI middleware, outermost, authenticates every API request before its body is read (401 for no key,
a malformed, unknown or revoked one; the caller's tenant is handed to the endpoints in the request state), bounds
every request body (413 as soon as the declared or streamed size passes
``server.max_upload_bytes`` plus room for the form fields, :data:`MAX_JSON_BODY_BYTES` for a JSON body; 408 when no
part of an unfinished body arrives for ``server.body_idle_seconds``), records request counts and latencies by
route template (also for the answers it gives before routing), and writes one structured log line per request
(``method=... path=... route=... status=... seconds=... request_id=...``; never the ``Authorization`` header), and
gives every answer an ``X-Request-ID`` (the client's own when it sent a plain one) and every 405 an ``Allow`` naming
the methods of every route at its path; it answers ``HEAD`` wherever ``GET`` is served (HTTP requires it; FastAPI's
routes declare only the methods they are given); API answers are marked ``Cache-Control: no-store`` (they carry
transcripts and enrollment texts) and ``X-Content-Type-Options: nosniff``. While the database
cannot check keys, the guard logs the first failure with its traceback and then one line per
``OUTAGE_LOG_SECONDS`` counting the refusals, not a traceback per request. With ``server.cors_allow_origins`` set,
Starlette's CORS middleware sits outside the guard: it answers browsers' preflights, which carry no key, and adds the
CORS headers to every answer for those origins, the guard's refusals included.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kospeech.service.audio import limit_ffmpeg_allocations
from kospeech.service.deps import CALLER_STATE, MISSING_KEY, NOT_BEARER, UNCHECKABLE_KEY, UNKNOWN_KEY, Caller
from kospeech.service.errors import error_body, install_error_handlers
from kospeech.service.keys import authenticate, is_well_formed_key
from kospeech.service.routers import health, jobs, pages, prompts, transcriptions, users, utterances
from kospeech.service.settings import ServerConfig
from kospeech.service.state import ServiceState

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "CORS_EXPOSED_HEADERS",
    "CORS_MAX_AGE_SECONDS",
    "CORS_METHODS",
    "CORS_REQUEST_HEADERS",
    "FORM_OVERHEAD_BYTES",
    "MAX_JSON_BODY_BYTES",
    "OUTAGE_LOG_SECONDS",
    "REQUEST_ID_HEADER",
    "create_app",
]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("kospeech.service.access")

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted and logged under their own name; any other is ``other``."""

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")

REQUEST_ID_HEADER = b"x-request-id"
"""Every answer carries the request's id (the client's own when it sent a plain one), as the access log does."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

FORM_OVERHEAD_BYTES = 1 << 20
"""Room for multipart headers and text fields on top of ``server.max_upload_bytes`` in a request body."""

MAX_JSON_BODY_BYTES = 64 << 10
"""The largest JSON body (the API's JSON requests are a few hundred bytes): a megabyte-sized object of unknown fields
would otherwise hold the event loop for seconds while it is validated."""

_API_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]

CORS_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})
"""The API's methods, for browser pages of ``server.cors_allow_origins``."""
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
"""Headers such a page may send beyond the CORS-safelisted ones: the key, a JSON body's type, its own request id."""
CORS_EXPOSED_HEADERS = ("Location", "Retry-After", "X-Request-ID")
"""Answer headers such a page's script may read beyond the safelisted ones."""
CORS_MAX_AGE_SECONDS = 600
"""How long a browser may keep a preflight's answer."""

CLIENT_CLOSED_REQUEST = 499
"""The status logged and counted for a request whose client closed its connection before its body had arrived."""

OUTAGE_LOG_SECONDS = 30.0
"""While API keys cannot be checked, at most one log line per this many seconds (the first with its traceback)."""


def _is_json(content_type: bytes) -> bool:
    """Whether a body of this ``Content-Type`` is read as JSON (FastAPI reads a body without one as JSON too)."""
    media_type = content_type.split(b";")[0].strip().lower()
    return media_type in (b"", b"application/json") or media_type.endswith(b"+json")


class _OutageLog:
    """Logs a run of failed key checks without a traceback per request: the first failure with its traceback, then at
    most one warning per ``interval`` seconds with the number of refusals since, and one line when checks work again.

    Used from the event loop only (no lock).
    """

    def __init__(self, interval: float = OUTAGE_LOG_SECONDS) -> None:
        self.interval = interval
        self._failures = 0  # in the current run
        self._unlogged = 0  # since the last line
        self._logged_at = 0.0

    def failed(self) -> None:
        """Call from the ``except`` block of a failed check."""
        now = time.monotonic()
        self._failures += 1
        self._unlogged += 1
        if self._failures == 1:
            logger.exception("could not check an API key; answering 503 until the database answers again")
        elif now - self._logged_at >= self.interval:
            logger.warning("API keys still cannot be checked: %d requests refused with 503 since", self._unlogged)
        else:
            return
        self._logged_at, self._unlogged = now, 0

    def succeeded(self) -> None:
        """Call after a check that reached the database."""
        if self._failures:
            logger.warning("API keys can be checked again, after %d requests refused with 503", self._failures)
            self._failures = self._unlogged = 0


class _RequestGuard:
    """Authentication before the body, body limit, metrics and the access log (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_idle_seconds: float, routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_idle_seconds = body_idle_seconds
        self.routes: List[BaseRoute] = list(routes)  # to name the route of an answer given before routing
        self._outage = _OutageLog()

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str, *headers: Tuple[bytes, bytes]) -> None:
        body = json.dumps(error_body(code, message)).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _app_path(scope: Scope) -> str:
        """The request's path within this app, behind any ``root_path`` (a proxy's prefix or a mount)."""
        path, root = scope["path"], scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path

    def _is_api(self, scope: Scope) -> bool:
        """Whether the request is for the ``/v1`` API."""
        return self._app_path(scope).startswith("/v1/")

    @staticmethod
    def _presented_key(headers: Dict[bytes, bytes]) -> Tuple[Optional[str], Optional[str]]:
        """The bearer key of a request, or why there is none of the right form: ``(key, None)`` or ``(None, why)``."""
        header = headers.get(b"authorization", b"").decode("latin-1").strip()
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            return None, NOT_BEARER
        if not token.strip():
            return None, MISSING_KEY
        return (token.strip(), None) if is_well_formed_key(token.strip()) else (None, UNKNOWN_KEY)

    @staticmethod
    def _caller(state: ServiceState, key: str) -> Optional[Caller]:
        """The tenant of a live ``key``, else ``None`` (runs in a worker thread: a database query)."""
        with state.sessions() as session:
            row = authenticate(session, key)
            if row is None:
                return None
            return Caller(row.tenant_id, row.tenant.name, row.admin, row.user_id, row.id, time.monotonic())

    async def _authenticate(self, scope: Scope, headers: Dict[bytes, bytes]) -> Optional[Tuple[int, str, str]]:
        """Checks an API request's key before its body is read; ``None`` when it may go on (its caller is then in
        the request state), else the refusal's ``(status, code, message)``."""
        key, missing = self._presented_key(headers)
        if key is None:
            return 401, "unauthorized", missing
        state: ServiceState = scope["app"].state.service
        try:
            caller = await anyio.to_thread.run_sync(self._caller, state, key)
        except Exception:  # the database is down or failing: the server's fault, not the client's
            self._outage.failed()
            return 503, "unavailable", UNCHECKABLE_KEY
        self._outage.succeeded()
        if caller is None:
            return 401, "unauthorized", UNKNOWN_KEY
        scope.setdefault("state", {})[CALLER_STATE] = caller
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: Dict[str, Any] = {"code": 500}
        headers: Dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):  # the first of a repeated header, as Starlette reads it
            headers.setdefault(name, value)
        if _is_json(headers.get(b"content-type", b"")):
            limit = MAX_JSON_BODY_BYTES
            too_large = f"a JSON request body is limited to {limit} bytes"
        else:  # a multipart upload; any other type is refused (415) without its body being parsed
            limit = self.max_body_bytes
            too_large = f"the request body is larger than {limit} bytes (server.max_upload_bytes plus form fields)"
        is_api = self._is_api(scope)
        request_id = self._request_id(headers)
        own_headers = [(REQUEST_ID_HEADER, request_id.encode("ascii")), *(_API_HEADERS if is_api else ())]
        try:
            refused = await self._authenticate(scope, headers) if is_api else None
        except BaseException:
            self._log(scope, status["code"], started, request_id)
            raise
        declared = headers.get(b"content-length")
        if refused is not None:  # a client without a live key never gets its body read, parsed or spooled
            code, name, message = refused
            status["code"] = code
            extra = {401: [(b"www-authenticate", b"Bearer")], 503: [(b"retry-after", b"5")]}.get(code, [])
            await self._refuse(send, code, name, message, *own_headers, *extra)
            self._log(scope, status["code"], started, request_id)
            return
        if declared is not None and declared.isdigit() and int(declared) > limit:
            status["code"] = 413
            await self._refuse(send, 413, "upload_too_large", too_large, *own_headers)
            self._log(scope, status["code"], started, request_id)
            return
        declared = self._declared_methods(scope)
        # HTTP has HEAD wherever GET is: the GET route answers, and its body is left out below
        head_as_get = scope["method"] == "HEAD" and "GET" in declared and "HEAD" not in declared
        methods = declared | {"HEAD"} if "GET" in declared else declared  # what a 405's Allow names
        served = {**scope, "method": "GET"} if head_as_get else scope
        received = 0
        body_complete = False

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:  # after the body the app only listens for a disconnect, which may come much later
                return await receive()
            with anyio.move_on_after(self.body_idle_seconds) as waiting:
                message = await receive()
            if waiting.cancelled_caught:  # a stalled client would hold its spooled parts and a connection for good
                raise HTTPException(
                    408,
                    f"no part of the request body arrived for {self.body_idle_seconds:g} s (server.body_idle_seconds)",
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large)
                body_complete = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":  # the client left mid-body: its fault, but no malformed body
                status["client_left"] = True
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [*message.get("headers", ()), *own_headers]
                if message["status"] == 405 and methods:  # Starlette names the first fitting route's methods only
                    headers = [item for item in headers if item[0].lower() != b"allow"]
                    headers.append((b"allow", ", ".join(sorted(methods)).encode("ascii")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and head_as_get:
                message = {**message, "body": b""}  # its Content-Length stays: the size the GET would have sent
            await send(message)

        try:
            await self.app(served, limited_receive, recording_send)
        finally:
            # nginx's 499: whatever the app answered went nowhere, and a 400 would count a client's broken body
            self._log(
                scope, CLIENT_CLOSED_REQUEST if status.get("client_left") else status["code"], started, request_id
            )

    @staticmethod
    def _request_id(headers: Dict[bytes, bytes]) -> str:
        """The client's ``X-Request-ID`` when it is a plain token (1-128 of ``[A-Za-z0-9._:-]``), else a new one."""
        given = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    def _routes_at(self, scope: Scope) -> Iterator[BaseRoute]:
        """The routes whose path template fits the request's path, whatever their methods."""
        path = self._app_path(scope)
        return (route for route in self.routes if route.path_regex.fullmatch(path))

    def _declared_methods(self, scope: Scope) -> Set[str]:
        """Every method some route declares at the request's path."""
        return {method for route in self._routes_at(scope) for method in getattr(route, "methods", None) or ()}

    def _route(self, scope: Scope) -> str:
        """The request's route template: the matched route's, or for an answer given before routing (the guard's
        401, 413 and 503) the one whose path fits; ``unmatched`` when none does."""
        route = scope.get("route") or next(self._routes_at(scope), None)
        return getattr(route, "path", None) or "unmatched"

    def _log(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        route = self._route(scope)
        # any token is a method to the HTTP parser: one label per invented method would grow the metrics without end
        method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
        state: Optional[ServiceState] = getattr(scope["app"].state, "service", None) if "app" in scope else None
        if state is not None:
            state.metrics.requests.labels(method, route, str(status)).inc()
            state.metrics.latency.labels(method, route).observe(seconds)
        # the path arrives percent-decoded: a %0A or %20 in it must not forge a line or a field of this log
        path = _CONTROL_CHARACTERS.sub(lambda found: f"\\x{ord(found.group()):02x}", scope["path"])
        access_logger.info(
            "method=%s path=%s route=%s status=%d seconds=%.4f request_id=%s",
            method,
            path,
            route,
            status,
            seconds,
            request_id,
        )


def create_app(settings: ServerConfig, state: Optional[ServiceState] = None) -> FastAPI:
    """The service's FastAPI app.

    Args:
        settings: the checked settings.
        state: an already opened state to serve (tests); by default the lifespan opens one and closes it.

    Returns:
        The app (its OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = state is None
        app.state.service = ServiceState.open(settings) if opened else state
        try:
            yield
        finally:
            if opened:
                app.state.service.close()

    limit_ffmpeg_allocations()  # before any upload is opened: see the function
    app = FastAPI(
        title="kospeech personalization service",
        version="1",
        description="Korean speech recognition with per-user adapters: enroll, train in the background, transcribe.",
        lifespan=lifespan,
        redirect_slashes=False,  # a 307 to the path without its slash made clients send an upload twice
    )
    install_error_handlers(app)
    routers = [module.router for module in (health, transcriptions, users, utterances, prompts, jobs, pages)]
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        _RequestGuard,
        max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        body_idle_seconds=settings.body_idle_seconds,
        routes=[route for router in routers for route in router.routes],
    )
    if settings.cors_allow_origins:  # outside the guard: preflights carry no key, and refusals need the CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=sorted(CORS_METHODS),
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=CORS_MAX_AGE_SECONDS,
        )
    return app
