"""Fixtures of the service tests: settings on a temporary data folder, a running app with two tenants' keys, audio.

The app serves the shipped base model (``pretrained/ds2_synthetic.pt``). PostgreSQL (127.0.0.1:5432, database
``test``) and Redis (127.0.0.1:6379) are real services; tests needing them skip, saying so, only where they do not
answer.
"""

import io
import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from kospeech.checkpoint import load_checkpoint
from kospeech.data.synthetic import build_user_sets, ensure_corpus
from kospeech.models import AdapterManager
from kospeech.service import create_app, load_settings
from kospeech.service.db import create_db_engine, migrate, session_factory, session_scope
from kospeech.service.keys import create_key, revoke_key

ROOT = Path(__file__).resolve().parents[2]
BASE_MODEL = ROOT / "pretrained" / "ds2_synthetic.pt"
MAX_UPLOAD_BYTES = 1 << 20
MAX_AUDIO_SECONDS = 12.0
POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def reachable(address) -> bool:
    """Whether a TCP service answers at ``address``."""
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


def settings_for(data_dir: Path, *extra: str):
    """Service settings on ``data_dir`` with the test limits."""
    return load_settings(
        [
            f"server.data_dir={data_dir}",
            f"server.base_model_path={BASE_MODEL}",
            f"server.max_upload_bytes={MAX_UPLOAD_BYTES}",
            f"server.max_audio_seconds={MAX_AUDIO_SECONDS}",
            "server.batch_max_wait_ms=5",
            "server.in_process_worker=false",
            *extra,
        ]
    )


def wav_bytes(waveform: np.ndarray, sample_rate: int = 16000, audio_format: str = "WAV", **kwargs) -> bytes:
    """``waveform`` encoded in memory by soundfile."""
    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format=audio_format, **kwargs)
    return buffer.getvalue()


def tone(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A quiet chirp with noise: audio that decodes to something (or nothing), never an error."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.2 * np.sin(2 * np.pi * (220 + 300 * t) * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def save_adapter(folder: Path, name: str, seed: int) -> Path:
    """A head adapter for the shipped base with random, non-trivial weights, saved as ``folder/<name>_adapter.pt``."""
    checkpoint = load_checkpoint(BASE_MODEL)
    model = checkpoint.build_model()
    model.add_adapter("head", hidden_dims=[32])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return AdapterManager.save_adapter(
        model,
        folder,
        name,
        vocab_fingerprint=checkpoint.vocab.fingerprint(),
        feature_config=checkpoint.feature_config.to_dict(),
    )


@dataclass
class Service:
    """A running app and what the tests need to talk to it."""

    client: TestClient
    keys: Dict[str, str]  # "acme", "globex", "revoked" -> key
    data_dir: Path

    def headers(self, tenant: str = "acme") -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def make_keys(settings) -> Dict[str, str]:
    """Keys of two tenants, plus a revoked key of the first."""
    engine = create_db_engine(settings.database())
    migrate(engine)
    with session_scope(session_factory(engine)) as session:
        keys = {"acme": create_key(session, "acme"), "globex": create_key(session, "globex")}
        keys["revoked"] = create_key(session, "acme")
        revoke_key(session, keys["revoked"])
    engine.dispose()
    return keys


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    """The app on a fresh data folder (SQLite, no in-process worker), shared by one test module."""
    data_dir = tmp_path_factory.mktemp("service")
    settings = settings_for(data_dir)
    keys = make_keys(settings)
    with TestClient(create_app(settings)) as client:
        yield Service(client, keys, data_dir)


@pytest.fixture
def user_id() -> str:
    """A fresh user id."""
    return f"u{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def tiny_users(tmp_path_factory) -> Path:
    """The built-in tiny corpus with 12 enrollment utterances per user (about ten seconds, once per session)."""
    corpus = tmp_path_factory.mktemp("corpus") / "tiny"
    ensure_corpus(corpus, preset="tiny", seed=0, enroll_per_user=12)
    return corpus


DEMO_TEST_UTTERANCES = 20


@pytest.fixture(scope="session")
def demo_user01(request, tmp_path_factory) -> Dict[str, Path]:
    """The built-in user01 of the demo corpus the shipped base was trained on: 100 enrollment and 20 test utterances
    (manifests ``enroll`` and ``test``). About 20 s to synthesize; kept in pytest's cache folder when it is on."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("kospeech-service-demo-users") if cache is not None else tmp_path_factory.mktemp("users")
    vocab = load_checkpoint(BASE_MODEL).vocab
    sets = build_user_sets(
        folder, vocab, preset="demo", users=["user01"], max_enroll=100, max_test=DEMO_TEST_UTTERANCES, num_workers=2
    )
    return sets["user01"]


def service_unavailable(reason: str) -> None:
    """Skip a test whose database or queue server is not running, saying so; under ``KOSPEECH_REQUIRE_SERVICES=1``
    (``.ci/run``, whose machines run both) fail it instead: CI must run these tests, never skip them quietly."""
    if os.environ.get("KOSPEECH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (KOSPEECH_REQUIRE_SERVICES=1: these tests must run here)")
    pytest.skip(reason)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of the real PostgreSQL database ``test`` on a schema made for the caller (dropped after)."""
    if not reachable(POSTGRES):
        service_unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    schema = f"kospeech_test_{uuid.uuid4().hex[:10]}"
    for user in ("postgres", "root"):
        try:
            connection = psycopg.connect(host=POSTGRES[0], port=POSTGRES[1], dbname="test", user=user, autocommit=True)
        except psycopg.OperationalError:
            continue
        break
    else:
        pytest.fail("PostgreSQL answers on 127.0.0.1:5432 but neither user postgres nor root may connect to 'test'")
    connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{user}@{POSTGRES[0]}:{POSTGRES[1]}/test?options=-csearch_path%3D{schema}"
    finally:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL schema shared by the session's storage tests (each drops its tables after)."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of one test's own."""
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis (tests use a unique queue name each)."""
    if not reachable(REDIS):
        service_unavailable("Redis is not running on 127.0.0.1:6379")
    return f"redis://{REDIS[0]}:{REDIS[1]}/0"
