"""Scale-out on loopback: two ``kospeech-serve`` and two ``kospeech-worker`` processes sharing one PostgreSQL database
(a schema of this test's own), one Redis (a queue name of its own) and one ``data_dir``. A user enrolled through
server A is trained by one of the workers and transcribed by server B with the new adapter, without a restart."""

import re
import signal
import uuid

import pytest
from conftest import BASE_MODEL
from service_processes import Server, ServiceProcess, create_key, poll_job, upload_utterances

from kospeech.data.manifest import read_manifest
from kospeech.service.storage import Storage

ENROLLMENT = 50
TRAIN_EPOCHS = 3


@pytest.mark.slow
def test_a_user_enrolled_on_one_server_is_trained_by_either_worker_and_served_by_the_other_server(
    tmp_path, demo_user01, fresh_postgres_url, redis_url
):
    data_dir = tmp_path / "shared_data"  # on several machines: a shared file system mounted at the same path
    common = [
        f"server.data_dir={data_dir}",
        f"server.base_model_path={BASE_MODEL}",
        f"server.database_url={fresh_postgres_url}",
        "server.queue=redis",
        f"server.redis_url={redis_url}",
        f"server.queue_name=kospeech-test-{uuid.uuid4().hex[:10]}",
    ]
    key = create_key(common, "acme", cwd=tmp_path)
    training = [*common, f"server.train_num_epochs={TRAIN_EPOCHS}"]
    workers = [ServiceProcess("worker", training, tmp_path / f"worker{n}.log", tmp_path) for n in (1, 2)]
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(
                Server([*common, "server.in_process_worker=false"], tmp_path / f"server_{name}.log", tmp_path)
            )
        server_a, server_b = servers
        enroll, test = read_manifest(demo_user01["enroll"]), read_manifest(demo_user01["test"])
        speech = test[0].audio_path.read_bytes()
        with server_a.client(key) as a, server_b.client(key) as b:

            def served_by_b():
                response = b.post(
                    "/v1/audio/transcriptions",
                    files={"file": ("clip.wav", speech)},
                    data={"user": "user01", "response_format": "verbose_json"},
                )
                assert response.status_code == 200, response.text
                return response.json()

            assert a.post("/v1/users", json={"user_id": "user01"}).status_code == 201
            upload_utterances(a, "user01", enroll[:ENROLLMENT])
            assert b.get("/v1/users/user01").json()["utterances"] == ENROLLMENT
            before = served_by_b()
            assert before["adapter"] is None  # no adapter yet: the base model

            job_id = a.post("/v1/users/user01/adapter", json={"adapter_type": "encoder"}).json()["job_id"]
            job, _ = poll_job(b, job_id, timeout=900)  # polled through the other server
            logs = "\n".join(worker.output(20000) for worker in workers)
            assert job["status"] == "succeeded" and job["result"]["activated"], f"{job}\n{logs}"
            trained_by = [
                worker.name + str(n)
                for n, worker in enumerate(workers, start=1)
                if re.search(f"job={job_id} user=acme/user01 attempt=1 training", worker.output(20000))
            ]
            assert len(trained_by) == 1, logs  # one worker ran it, once

            after = served_by_b()
            assert after["adapter"] == {"user": "user01", "version": job["result"]["version"]}
            assert after["text"] != before["text"] or after["confidence"] != before["confidence"]
            assert a.get("/v1/users/user01").json()["adapter"]["version"] == job["result"]["version"]

            assert b.delete("/v1/users/user01").status_code == 204
            assert a.get("/v1/users/user01").status_code == 404
            assert not Storage(data_dir).user_dir("acme", "user01").exists()
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.stop(signal.SIGINT)
