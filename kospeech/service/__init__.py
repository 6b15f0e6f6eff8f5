"""The personalization service (SPEC section 7): a REST API to enroll users, train their adapters in the background
and transcribe them with their adapters, batched across users.

Modules, one concept each:

- :mod:`~kospeech.service.settings`: the typed settings (``server.*`` keys).
- :mod:`~kospeech.service.models`, :mod:`~kospeech.service.db`: database tables, engine, Alembic migrations.
- :mod:`~kospeech.service.keys`: API keys (hashed, constant-time checked).
- :mod:`~kospeech.service.storage`: the file layout under ``data_dir``.
- :mod:`~kospeech.service.audio`: bounded uploads and their decoding.
- :mod:`~kospeech.service.adapter_cache`, :mod:`~kospeech.service.batching`: serving adapters and cross-user batches.
- :mod:`~kospeech.service.training`, :mod:`~kospeech.service.jobs`: training jobs on huey.
- :mod:`~kospeech.service.versions`: users' adapter versions (the database says which one is served).
- :mod:`~kospeech.service.app`, :mod:`~kospeech.service.routers`: the FastAPI app.
- :mod:`~kospeech.service.repeated_errors`: a log filter for errors that repeat with every request or poll.

Console scripts: ``kospeech-serve``, ``kospeech-worker``, ``kospeech-keys`` (:mod:`kospeech.cli`).
"""

from kospeech.service.app import create_app
from kospeech.service.settings import ServerConfig, ServiceConfig, load_settings, register_service_configs

__all__ = ["ServerConfig", "ServiceConfig", "create_app", "load_settings", "register_service_configs"]
