"""The service end to end with real processes on loopback: ``kospeech-keys``, ``kospeech-serve`` and
``kospeech-worker`` on the default storage (SQLite, huey on SQLite, files under one ``data_dir``), a built-in user
enrolled with 100 uploads, trained, transcribed with and without the adapter, deleted."""

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import BASE_MODEL, tone, wav_bytes
from service_processes import Server, ServiceProcess, create_key, poll_job, upload_utterances
from sqlalchemy import create_engine, text

from kospeech.data.manifest import read_manifest
from kospeech.metrics import character_error_rate
from kospeech.service.storage import Storage

TRAIN_EPOCHS = 3
"""Epochs of the training job (the encoder recipe's 20 under early stopping take minutes on a loaded CI machine)."""


def transcribe_all(client, entries, user=None):
    """Every entry's verbose_json transcription, four requests at a time (so they meet in batches)."""

    def one(entry):
        data = {"response_format": "verbose_json", **({"user": user} if user else {})}
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": (entry.audio_path.name, entry.audio_path.read_bytes())},
            data=data,
        )
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, entries))


@pytest.mark.slow
def test_enroll_train_transcribe_and_delete_with_real_processes(tmp_path, demo_user01):
    data_dir = tmp_path / "service_data"
    common = [f"server.data_dir={data_dir}", f"server.base_model_path={BASE_MODEL}"]
    key = create_key(common, "acme", cwd=tmp_path)
    worker = ServiceProcess(
        "worker", [*common, f"server.train_num_epochs={TRAIN_EPOCHS}"], tmp_path / "worker.log", tmp_path
    )
    server = None
    try:
        server = Server([*common, "server.in_process_worker=false"], tmp_path / "server.log", tmp_path)
        enroll, test = read_manifest(demo_user01["enroll"]), read_manifest(demo_user01["test"])
        assert len(enroll) == 100
        with server.client(key) as client:
            assert client.post("/v1/users", json={"user_id": "user01"}).status_code == 201
            uploaded = upload_utterances(client, "user01", enroll)
            record = client.get("/v1/users/user01").json()
            assert record["utterances"] == 100 and record["adapter"] is None
            assert record["audio_seconds"] == pytest.approx(sum(answer["duration"] for answer in uploaded), abs=0.01)

            created = client.post("/v1/users/user01/adapter", json={"adapter_type": "encoder"})
            assert created.status_code == 202, created.text
            job, seen = poll_job(client, created.json()["job_id"], timeout=900)
            assert job["status"] == "succeeded", f"{job}\n{worker.output()}"
            progress = [value for _, value in seen]
            assert progress == sorted(progress) and progress[-1] == 1.0
            result = job["result"]
            assert result["activated"] and result["version"] == 1 and result["cer_after"] < result["cer_before"]

            base = transcribe_all(client, test)
            adapted = transcribe_all(client, test, user="user01")
            assert all(answer["adapter"] is None for answer in base)
            assert all(answer["adapter"] == {"user": "user01", "version": 1} for answer in adapted)
            references = [entry.transcript for entry in test]
            base_cer = character_error_rate(references, [answer["text"] for answer in base])
            adapter_cer = character_error_rate(references, [answer["text"] for answer in adapted])
            print(json.dumps({"base_cer": base_cer, "adapter_cer": adapter_cer, "job": result}))
            assert adapter_cer < base_cer, (base_cer, adapter_cer)

            metrics = client.get("/metrics").text
            assert 'kospeech_jobs{state="succeeded"} 1.0' in metrics
            assert "kospeech_batch_size_requests_count" in metrics

            database = create_engine(f"sqlite:///{data_dir / 'service.db'}")
            with database.connect() as connection:
                user_pk = connection.execute(text("SELECT id FROM users WHERE user_id = 'user01'")).scalar_one()
            user_dir = Storage(data_dir).user_dir("acme", "user01")
            assert len(list((user_dir / "utterances").iterdir())) == 100 and any((user_dir / "versions").iterdir())
            assert client.delete("/v1/users/user01").status_code == 204
            assert client.get("/v1/users/user01").status_code == 404
            assert not user_dir.exists()
            with database.connect() as connection:
                for table in ("utterances", "adapter_versions", "jobs"):
                    count = connection.execute(
                        text(f"SELECT count(*) FROM {table} WHERE user_pk = :pk"), {"pk": user_pk}
                    )
                    assert count.scalar_one() == 0, table
            database.dispose()
        status = server.stop()  # SIGTERM: graceful shutdown (uvicorn re-raises the signal once it has stopped)
        assert status in (0, -signal.SIGTERM) and "service stopped" in server.output(), server.output()
    finally:
        if server is not None:
            server.stop(signal.SIGKILL)
        worker_status = worker.stop(signal.SIGINT)
    assert worker_status == 0, worker.output()


@pytest.mark.slow
def test_more_concurrent_transcriptions_than_database_connections_all_succeed(tmp_path):
    """64 requests at once, more than the server's 40 worker threads and database connections, waiting for their
    batches: none holds a connection while it waits for a thread or for the model."""
    concurrent = 64
    common = [f"server.data_dir={tmp_path / 'data'}", f"server.base_model_path={BASE_MODEL}"]
    key = create_key(common, "acme", cwd=tmp_path)
    batching = [
        f"server.batch_max_size={concurrent}",
        "server.batch_max_wait_ms=60000",
        "server.in_process_worker=false",
    ]
    server = Server([*common, *batching], tmp_path / "server.log", tmp_path)
    try:
        with server.client(key, timeout=90) as client:
            assert client.post("/v1/users", json={"user_id": "ann"}).status_code == 201
            speech = wav_bytes(tone(0.5))

            def one(index):
                return client.post(
                    "/v1/audio/transcriptions", files={"file": (f"{index}.wav", speech)}, data={"user": "ann"}
                )

            with ThreadPoolExecutor(concurrent) as pool:
                answers = list(pool.map(one, range(concurrent)))
            assert [answer.status_code for answer in answers] == [200] * concurrent, answers[-1].text
            metrics = client.get("/metrics").text
            assert f"kospeech_batch_size_requests_sum {concurrent}.0" in metrics
            batches = float(metrics.split("kospeech_batch_size_requests_count ")[1].split()[0])
            assert batches <= concurrent / 4  # they waited for each other
    finally:
        server.stop()
