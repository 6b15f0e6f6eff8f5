"""``GET /healthz`` and ``GET /metrics`` (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kospeech.service.deps import StateDep
from kospeech.service.metrics import CONTENT_TYPE
from kospeech.service.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
@router.head("/healthz", response_model=Health, operation_id="healthz_head")  # one id per operation (OpenAPI)
def healthz() -> Health:
    """The process is up and serving (``HEAD`` too, as load balancers' health checks send)."""
    return Health()


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(state: StateDep) -> Response:
    """Prometheus metrics: requests, latency, batch sizes, queue depth, adapter cache, jobs by state."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
