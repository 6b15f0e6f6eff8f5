"""Training jobs: a real job run end to end in-process, recovery of a killed worker's job, huey on real Redis."""

import time
import uuid
from datetime import timedelta

from conftest import make_keys, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import select

from kospeech.data.manifest import read_manifest
from kospeech.service import create_app
from kospeech.service.db import create_db_engine, migrate, session_factory, session_scope
from kospeech.service.jobs import JobQueue, recover_stale_jobs
from kospeech.service.models import Job, Tenant, User, utcnow
from kospeech.service.storage import Storage
from kospeech.service.training import AdapterJobRunner


def poll(client, job_id, headers, timeout=300.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        seen.append((job["status"], job["progress"]))
        if job["status"] in ("succeeded", "failed"):
            return job, seen
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {seen[-5:]}")


def test_a_training_job_runs_end_to_end_in_process(tmp_path, tiny_users):
    settings = settings_for(
        tmp_path, "server.in_process_worker=true", "server.train_num_epochs=3", "server.min_enrollment_utterances=5"
    )
    keys = make_keys(settings)
    headers = {"Authorization": f"Bearer {keys['acme']}"}
    entries = read_manifest(tiny_users / "users" / "user01" / "enroll.tsv")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/users", json={"user_id": "user01"}, headers=headers).status_code == 201
        for entry in entries:
            response = client.post(
                "/v1/users/user01/utterances",
                files={"file": (entry.audio_path.name, entry.audio_path.read_bytes())},
                data={"text": entry.transcript},
                headers=headers,
            )
            assert response.status_code == 201, response.text
        created = client.post("/v1/users/user01/adapter", json={"adapter_type": "encoder"}, headers=headers)
        assert created.status_code == 202
        job, seen = poll(client, created.json()["job_id"], headers)
        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0 and job["error"] is None
        progress = [value for _, value in seen]
        assert progress == sorted(progress)  # never goes back
        result = job["result"]
        assert set(result) == {"cer_before", "cer_after", "activated", "version"} and result["version"] == 1
        assert result["activated"] == (result["cer_after"] < result["cer_before"])
        record = client.get("/v1/users/user01", headers=headers).json()
        assert record["adapter"]["version"] == 1 and record["adapter"]["active"] == result["activated"]
        assert record["adapter"]["adapter_type"] == "encoder" and record["jobs"] == [job]
        storage = Storage(tmp_path)
        assert storage.version_file("acme", "user01", 1).is_file()
        assert not (storage.user_dir("acme", "user01") / "jobs" / job["job_id"]).exists()
        assert storage.active_adapter("acme", "user01").is_file() == result["activated"]
        speech = entries[0].audio_path.read_bytes()
        served = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", speech)},
            data={"user": "user01", "response_format": "verbose_json"},
            headers=headers,
        ).json()
        assert served["adapter"] == ({"user": "user01", "version": 1} if result["activated"] else None)
        metrics = client.get("/metrics").text
        assert 'kospeech_jobs{state="succeeded"} 1.0' in metrics
        assert client.delete("/v1/users/user01", headers=headers).status_code == 204
        assert not storage.user_dir("acme", "user01").exists()


def _job_row(sessions, status="running", attempts=1, heartbeat_age=3600.0):
    with session_scope(sessions) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "acme"))
        user = User(tenant_id=tenant.id, user_id=f"u{uuid.uuid4().hex[:8]}")
        session.add(user)
        session.flush()
        job = Job(
            tenant_id=tenant.id,
            user_pk=user.id,
            adapter_type="head",
            status=status,
            progress=0.4,
            attempts=attempts,
            heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age),
        )
        session.add(job)
        session.flush()
        return job.id


def _queue(settings):
    engine = create_db_engine(settings.database())
    migrate(engine)
    sessions = session_factory(engine)
    runner = AdapterJobRunner(settings.base_model_path)
    return JobQueue(settings, sessions, Storage(settings.data_dir), runner), engine


def test_a_killed_workers_job_is_queued_again_and_failed_when_out_of_attempts(tmp_path):
    settings = settings_for(tmp_path, "server.job_lease_seconds=60", "server.job_max_attempts=2")
    make_keys(settings)
    queue, engine = _queue(settings)
    stale = _job_row(queue.sessions, attempts=1)
    fresh = _job_row(queue.sessions, attempts=1, heartbeat_age=1.0)
    exhausted = _job_row(queue.sessions, attempts=2)
    assert recover_stale_jobs(queue) == 1
    with queue.sessions() as session:
        states = {job_id: session.get(Job, job_id) for job_id in (stale, fresh, exhausted)}
        assert states[stale].status == "queued" and "worker stopped" in states[stale].error
        assert states[fresh].status == "running"
        assert states[exhausted].status == "failed" and states[exhausted].finished_at is not None
    assert [task.args for task in queue.huey.pending()] == [(stale,)]
    assert recover_stale_jobs(queue) == 0  # a second worker's recovery finds nothing left to do
    engine.dispose()


def test_a_job_runs_only_from_the_queued_state(tmp_path):
    settings = settings_for(tmp_path)
    make_keys(settings)
    queue, engine = _queue(settings)
    running = _job_row(queue.sessions, status="running", heartbeat_age=1.0)
    queue.run_job(running)  # another worker has it: nothing happens
    queue.run_job("no-such-job")
    with queue.sessions() as session:
        job = session.get(Job, running)
        assert job.status == "running" and job.attempts == 1 and job.progress == 0.4
    engine.dispose()


def test_too_few_usable_utterances_fail_the_job_without_retry(tmp_path):
    settings = settings_for(tmp_path, "server.job_max_attempts=3")
    make_keys(settings)
    queue, engine = _queue(settings)
    job_id = _job_row(queue.sessions, status="queued", attempts=0)
    queue.run_job(job_id)  # the user has no utterance: the trainer refuses, no exception reaches huey
    with queue.sessions() as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and job.attempts == 1 and job.error
    engine.dispose()


def test_jobs_travel_over_redis(tmp_path, redis_url):
    name = f"kospeech-test-{uuid.uuid4().hex[:10]}"
    settings = settings_for(
        tmp_path, "server.queue=redis", f"server.redis_url={redis_url}", f"server.queue_name={name}"
    )
    make_keys(settings)
    queue, engine = _queue(settings)
    try:
        stale = _job_row(queue.sessions)
        assert recover_stale_jobs(queue) == 1
        assert queue.depth() == 1
        task = queue.huey.dequeue()
        assert task.name == "kospeech.train_adapter" and task.args == (stale,)
        assert queue.depth() == 0
    finally:
        queue.huey.flush()
        engine.dispose()
