"""A property-based fuzz of every endpoint of the OpenAPI schema (schemathesis) against a real ``kospeech-serve``
process: valid and invalid paths, queries, JSON bodies and multipart forms, sent with a valid key so that the
authenticated code is reached, never answer 5xx, and every error is the JSON ``{"error": {"code", "message"}}``.

Each operation is fuzzed twice: with generated ids (unknown users and jobs) and with the id of an existing user and
a real recording in place of the generated file, so that uploads, training requests and transcriptions reach their
handlers, the decoder, the model and the disk with the other fields fuzzed. The server runs on a fresh data folder
(SQLite, no worker); the number of examples is bounded so that the whole fuzz takes well under a minute.
"""

from typing import Iterator

import httpx
import pytest
import schemathesis
from conftest import BASE_MODEL, MAX_AUDIO_SECONDS, MAX_UPLOAD_BYTES, make_keys, settings_for, tone, wav_bytes
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from service_processes import Server

from kospeech.service import create_app, load_settings

EXAMPLES = 25
EXISTING_USER = "alice"
SPEECH = wav_bytes(tone(0.5))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

schema = schemathesis.openapi.from_dict(create_app(load_settings()).openapi())  # the schema the code generates


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple]:
    """(a running server, headers with a valid key of its tenant ``acme``)."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    extra = ["server.min_enrollment_utterances=2"]
    keys = make_keys(settings_for(data_dir, *extra))
    arguments = [
        f"server.data_dir={data_dir}",
        f"server.base_model_path={BASE_MODEL}",
        f"server.max_upload_bytes={MAX_UPLOAD_BYTES}",
        f"server.max_audio_seconds={MAX_AUDIO_SECONDS}",
        "server.in_process_worker=false",
        *extra,
    ]
    running = Server(arguments, data_dir / "server.log", data_dir)
    try:
        yield running, {"Authorization": f"Bearer {keys['acme']}"}
    finally:
        running.stop()


def error_bodies_have_one_shape(ctx, response, case) -> None:
    """Every 4xx answer is ``{"error": {"code": str, "message": str}}``."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["message"], body


CHECKS = [not_a_server_error, error_bodies_have_one_shape]


def call(case, server) -> None:
    running, headers = server
    try:
        case.call_and_validate(base_url=running.url, headers=headers, checks=CHECKS)
    except Exception:
        print(running.output())  # the server's traceback of a 5xx
        raise


@pytest.mark.slow
@schema.parametrize()
@FUZZ_SETTINGS
def test_no_input_makes_the_server_fail(case, server):
    call(case, server)


@pytest.mark.slow
@schema.parametrize()
@FUZZ_SETTINGS
def test_no_input_about_an_existing_user_makes_the_server_fail(case, server):
    running, headers = server
    if isinstance(case.body, dict) and "file" in case.body:
        case.body["file"] = SPEECH  # real audio, so that the other fields reach decoding, the model and the disk
    if case.path_parameters and "user_id" in case.path_parameters:
        case.path_parameters["user_id"] = EXISTING_USER
        # a fuzzed DELETE may have removed the user: create it again (201, or 409 when it exists)
        created = httpx.post(f"{running.url}/v1/users", json={"user_id": EXISTING_USER}, headers=headers)
        assert created.status_code in (201, 409), created.text
    call(case, server)
