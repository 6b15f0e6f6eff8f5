"""``GET /v1/jobs/{job_id}``: a training job's status, progress and result."""

from __future__ import annotations

from fastapi import APIRouter

from kospeech.service.deps import JobDep
from kospeech.service.models import Job
from kospeech.service.schemas import API_ERRORS, ErrorBody, JobResult, JobStatus

__all__ = ["job_status", "router"]

router = APIRouter(prefix="/v1", tags=["jobs"], responses=API_ERRORS)


def job_status(job: Job) -> JobStatus:
    """The API view of a job row."""
    result = None
    if job.status == "succeeded" and job.version is not None:
        result = JobResult(
            cer_before=job.cer_before, cer_after=job.cer_after, activated=bool(job.activated), version=job.version
        )
    return JobStatus(
        job_id=job.id,
        user_id=job.user.user_id,
        status=job.status,
        progress=job.progress,
        result=result,
        error=job.error if job.status == "failed" else None,
    )


@router.get("/jobs/{job_id}", response_model=JobStatus, responses={404: {"model": ErrorBody}})
def get_job(job: JobDep) -> JobStatus:
    """The job's state: queued, running (with progress 0..1), succeeded (with its result) or failed (with why)."""
    return job_status(job)
