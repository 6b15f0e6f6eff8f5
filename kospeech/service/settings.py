"""The service's settings: one typed object, read from ``server.KEY=VALUE`` arguments (SPEC section 7).

``kospeech-serve``, ``kospeech-worker`` and ``kospeech-keys`` take the same keys::

    kospeech-serve server.port=8000 server.data_dir=./service_data server.database_url=postgresql+psycopg://db/asr

The schema is the :class:`ServiceConfig` dataclass (registered in Hydra's ConfigStore as ``service_schema`` by
:func:`register_service_configs`, like the library's configs); :func:`load_settings` merges the arguments into it
with OmegaConf, which refuses unknown keys and values of the wrong type, and then checks ranges.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kospeech.errors import ConfigError
from kospeech.resources import SHIPPED_BASE_MODEL, local_or_shipped

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

__all__ = [
    "QUEUE_BACKENDS",
    "SCHEMA_NAME",
    "ServerConfig",
    "ServiceConfig",
    "load_settings",
    "register_service_configs",
]

_ORIGIN = re.compile(r"(?P<scheme>https?)://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
"""An origin as browsers send it (and as the CORS check compares it, character for character): scheme and host in
lower case, a port only where it is not the scheme's own; no path, not even ``/``, and no wildcard."""

_DEFAULT_PORTS = {"http": "80", "https": "443"}

_HEARTBEATS_PER_LEASE = 3
"""A lease spans at least this many heartbeats, so that one late or failed heartbeat does not lose a running job."""

SCHEMA_NAME = "service_schema"
"""The ConfigStore name of :class:`ServiceConfig`."""

QUEUE_BACKENDS = ("sqlite", "redis")
"""``server.queue``: huey's SQLite storage under ``data_dir`` (one machine) or Redis (several machines)."""


@dataclass
class ServerConfig:
    """Every setting of the service (group ``server``)."""

    host: str = field(default="127.0.0.1", metadata={"help": "address kospeech-serve listens on"})
    port: int = field(default=8000, metadata={"help": "TCP port kospeech-serve listens on"})
    data_dir: str = field(
        default="./service_data", metadata={"help": "audio, adapters, the SQLite database and queue live here"}
    )
    base_model_path: str = field(
        default=SHIPPED_BASE_MODEL,
        metadata={"help": "base DeepSpeech2 checkpoint every user adapts (default: the shipped one)"},
    )
    database_url: Optional[str] = field(
        default=None,
        metadata={"help": "SQLAlchemy URL (default sqlite:///<data_dir>/service.db; postgresql+psycopg://...)"},
    )
    queue: str = field(default="sqlite", metadata={"help": "job queue backend: sqlite (embedded) or redis"})
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata={"help": "Redis URL when queue=redis"})
    queue_name: str = field(default="kospeech", metadata={"help": "huey queue name (the same on servers and workers)"})
    in_process_worker: bool = field(
        default=True, metadata={"help": "kospeech-serve also runs training jobs in a background thread"}
    )
    max_upload_bytes: int = field(default=25 * 2**20, metadata={"help": "largest audio upload, in bytes (413 beyond)"})
    max_audio_seconds: float = field(
        default=120.0, metadata={"help": "longest audio accepted, in seconds (422 beyond)"}
    )
    body_idle_seconds: float = field(
        default=30.0,
        metadata={
            "help": "longest wait for the next part of a request body, in seconds (408 beyond: a stalled upload)"
        },
    )
    batch_max_size: int = field(default=16, metadata={"help": "most transcription requests run as one batch"})
    batch_max_wait_ms: float = field(
        default=10.0, metadata={"help": "how long the first request of a batch waits for others, in ms"}
    )
    batch_forward_size: int = field(
        default=16,
        metadata={
            "help": "speech segments per model forward pass (a batch runs shortest first; best at least "
            "batch_max_size, so that a batch is one pass)"
        },
    )
    prepare_threads: Optional[int] = field(
        default=None,
        metadata={
            "help": "request threads preparing audio at once (speech detection, features, on a CPU the model's "
            "extractor); null: the cores the model thread's torch_threads leave free, at least 1"
        },
    )
    max_queued_requests: int = field(
        default=256,
        metadata={
            "help": "transcription requests waiting for the model at most, and uploads (transcriptions and enrollment "
            "recordings) waiting to be decoded at most; more answer 503 busy with Retry-After (each waiting request "
            "holds its upload or its audio's features)"
        },
    )
    adapter_cache_bytes: int = field(
        default=256 * 2**20, metadata={"help": "memory for loaded user adapters, in bytes (LRU beyond)"}
    )
    torch_threads: int = field(default=1, metadata={"help": "torch intra-op threads of this process"})
    device: str = field(
        default="cpu",
        metadata={"help": "where transcription and training run: cpu, cuda, cuda:N or auto (a GPU when there is one)"},
    )
    job_max_attempts: int = field(default=3, metadata={"help": "runs of a training job before it is failed"})
    job_lease_seconds: float = field(
        default=120.0,
        metadata={
            "help": "a running job whose worker sent no heartbeat for this long is queued again (at least 3 "
            "heartbeat intervals)"
        },
    )
    job_timeout_minutes: Optional[float] = field(
        default=120.0,
        metadata={
            "help": "a running job started this long ago is taken from its run and queued again (failed when out of "
            "attempts), whatever its heartbeats say: a run stuck in a read or a deadlock still sends them (null: never)"
        },
    )
    job_heartbeat_seconds: float = field(
        default=2.0, metadata={"help": "how often a training run reports its progress, which is its heartbeat"}
    )
    min_enrollment_utterances: int = field(
        default=5, metadata={"help": "utterances a user needs before an adapter can be trained"}
    )
    max_enrollment_utterances: int = field(
        default=500,
        metadata={
            "help": "the most utterances one user keeps (more answer 409 too_many_utterances): bounds a job's data"
        },
    )
    keep_inactive_versions: int = field(
        default=3,
        metadata={
            "help": "a user's inactive adapter versions (rejected, or replaced by a newer one) kept, newest first; "
            "older ones' files and rows go when a job records a new version (at least 1: a request may still be "
            "loading the version just replaced)"
        },
    )
    train_num_epochs: Optional[int] = field(
        default=None, metadata={"help": "epochs per training job (default: the adapter type's recipe)"}
    )
    train_max_minutes: Optional[float] = field(
        default=30.0,
        metadata={
            "help": "a training job's budget of training minutes: the run then stops and is judged on its best adapter "
            "so far (null: no limit)"
        },
    )
    cors_allow_origins: List[str] = field(
        default_factory=list,
        metadata={
            "help": "origins whose browser pages may call the API (CORS), e.g. [https://app.example.com]; '[\"*\"]' any; "
            "[] none (the enrollment page, served by the API itself, needs none)"
        },
    )
    default_adapter_type: str = field(default="encoder", metadata={"help": "adapter type trained when none is asked"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})

    def database(self) -> str:
        """The SQLAlchemy URL in force (the default SQLite file under ``data_dir`` when none is set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'service.db'}"


@dataclass
class ServiceConfig:
    """Top-level schema: ``server.*``."""

    server: ServerConfig = field(default_factory=ServerConfig)


def register_service_configs() -> None:
    """Store :class:`ServiceConfig` in Hydra's ConfigStore as :data:`SCHEMA_NAME` (calling it again is harmless)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=ServiceConfig)


def _check(server: ServerConfig) -> ServerConfig:
    for item in dataclasses.fields(server):  # nan slips past every comparison below, inf past most
        value = getattr(server, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"server.{item.name} must be a finite number, got {value!r}")
    positive = {
        "port": server.port,
        "max_upload_bytes": server.max_upload_bytes,
        "max_audio_seconds": server.max_audio_seconds,
        "body_idle_seconds": server.body_idle_seconds,
        "batch_max_size": server.batch_max_size,
        "batch_forward_size": server.batch_forward_size,
        "adapter_cache_bytes": server.adapter_cache_bytes,
        "torch_threads": server.torch_threads,
        "job_max_attempts": server.job_max_attempts,
        "job_lease_seconds": server.job_lease_seconds,
        "job_heartbeat_seconds": server.job_heartbeat_seconds,
        "min_enrollment_utterances": server.min_enrollment_utterances,
        "max_enrollment_utterances": server.max_enrollment_utterances,
        "max_queued_requests": server.max_queued_requests,
        "keep_inactive_versions": server.keep_inactive_versions,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"server.{key} must be > 0, got {value!r}")
    if server.job_lease_seconds < _HEARTBEATS_PER_LEASE * server.job_heartbeat_seconds:
        raise ConfigError(
            f"server.job_lease_seconds ({server.job_lease_seconds:g}) must be at least {_HEARTBEATS_PER_LEASE} x "
            f"server.job_heartbeat_seconds ({server.job_heartbeat_seconds:g}): with a shorter lease, recovery would "
            "take running jobs away from their workers between two heartbeats"
        )
    if server.port > 65535:
        raise ConfigError(f"server.port must be at most 65535, got {server.port}")
    if server.batch_max_wait_ms < 0:
        raise ConfigError(f"server.batch_max_wait_ms must be >= 0, got {server.batch_max_wait_ms}")
    if server.min_enrollment_utterances < 2:
        raise ConfigError("server.min_enrollment_utterances must be at least 2 (some are held out for validation)")
    if server.prepare_threads is not None and server.prepare_threads < 1:
        raise ConfigError(f"server.prepare_threads must be >= 1 or null, got {server.prepare_threads}")
    if server.max_enrollment_utterances < server.min_enrollment_utterances:
        raise ConfigError(
            f"server.max_enrollment_utterances ({server.max_enrollment_utterances}) must be at least "
            f"server.min_enrollment_utterances ({server.min_enrollment_utterances})"
        )
    if server.train_max_minutes is not None and server.train_max_minutes <= 0:
        raise ConfigError(f"server.train_max_minutes must be > 0 or null, got {server.train_max_minutes}")
    if server.job_timeout_minutes is not None and server.job_timeout_minutes <= 0:
        raise ConfigError(f"server.job_timeout_minutes must be > 0 or null, got {server.job_timeout_minutes}")
    if server.job_timeout_minutes is not None and server.job_timeout_minutes <= (server.train_max_minutes or 0):
        raise ConfigError(
            f"server.job_timeout_minutes ({server.job_timeout_minutes:g}) must be longer than "
            f"server.train_max_minutes ({server.train_max_minutes:g}): every run would be taken away before its "
            "training budget is spent"
        )
    if server.train_num_epochs is not None and server.train_num_epochs < 1:
        raise ConfigError(f"server.train_num_epochs must be >= 1 or null, got {server.train_num_epochs}")
    if server.queue not in QUEUE_BACKENDS:
        raise ConfigError(f"server.queue must be one of {list(QUEUE_BACKENDS)}, got {server.queue!r}")
    if server.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"server.log_level must be DEBUG, INFO, WARNING or ERROR, got {server.log_level!r}")
    for origin in server.cors_allow_origins:
        matched = _ORIGIN.fullmatch(origin)
        if origin != "*" and (matched is None or _DEFAULT_PORTS[matched["scheme"]] == matched["port"]):
            raise ConfigError(
                f"server.cors_allow_origins: {origin!r} is not an origin as browsers send it (scheme://host[:port] in "
                "lower case, the port only where not the scheme's own; no path, trailing / or wildcard), nor *"
            )
    if server.queue == "redis" and not server.redis_url.startswith(_REDIS_SCHEMES):
        raise ConfigError(f"server.redis_url must start with one of {list(_REDIS_SCHEMES)}, got {server.redis_url!r}")
    return server


def check_model_settings(server: ServerConfig) -> None:
    """The checks that need the model code (and so torch), left out of :func:`load_settings` so that
    ``kospeech-keys`` stays light; the server and the worker make them at start.

    Raises:
        ConfigError: ``default_adapter_type`` is no registered adapter type (every training request without one
            would be refused as the client's fault), or ``device`` is none this machine has.
    """
    from kospeech.device import resolve_device
    from kospeech.models import registered_adapter_types

    try:
        resolve_device(server.device)
    except ValueError as exc:
        raise ConfigError(f"server.device: {exc}") from exc
    if server.default_adapter_type not in registered_adapter_types():
        raise ConfigError(
            f"server.default_adapter_type must be one of {sorted(registered_adapter_types())}, "
            f"got {server.default_adapter_type!r}"
        )


def _unparsable(overrides: Sequence[str]) -> str:
    """The first argument whose value OmegaConf cannot read as YAML."""
    for argument in overrides:
        try:
            OmegaConf.from_dotlist([argument])
        except yaml.YAMLError:
            return repr(argument)
    return "a value"


def load_settings(overrides: Sequence[str] = ()) -> ServerConfig:
    """The settings from ``server.KEY=VALUE`` overrides on top of the defaults.

    Relative paths (``data_dir``, ``base_model_path``) are resolved against the current directory.

    Args:
        overrides: arguments such as ``server.port=8001`` (``null`` sets an optional key to None).

    Returns:
        The checked :class:`ServerConfig`.

    Raises:
        ConfigError: an argument without ``=``, an unknown key, a value of the wrong type or out of range.
    """
    for argument in overrides:
        if "=" not in argument or not argument.startswith("server."):
            raise ConfigError(f"expected server.KEY=VALUE, got {argument!r}")
    schema = OmegaConf.structured(ServiceConfig)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(list(overrides)))
        config: ServiceConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)  # OmegaConf's first line names the value, not always the key
        named = f"{key}: " if key and key not in str(exc).splitlines()[0] else ""
        raise ConfigError(f"bad setting: {named}{str(exc).splitlines()[0]}") from exc
    except yaml.YAMLError as exc:  # values are read as YAML: [*] is an unfinished alias
        raise ConfigError(f"bad setting: {_unparsable(overrides)} is not valid YAML; quote the value") from exc
    server = config.server
    server.data_dir = os.path.abspath(server.data_dir)
    server.base_model_path = os.path.abspath(local_or_shipped(server.base_model_path))  # installed: its copy
    return _check(server)
