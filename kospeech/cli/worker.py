"""``kospeech-worker``: runs the service's training jobs (huey consumer), on this or any machine sharing the
database and the queue.

    kospeech-worker server.data_dir=./service_data
    kospeech-worker server.database_url=postgresql+psycopg://db/asr server.queue=redis server.redis_url=redis://q:6379/0

Ctrl-C (SIGINT) or SIGTERM stops the training run in progress after its current step, puts its job back on the
queue without using up an attempt, then exits. A worker killed outright (SIGKILL, a lost machine) stops sending
heartbeats: its job is queued again once the heartbeat is older than ``server.job_lease_seconds``.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from kospeech.cli.serve import parse, settings_from_argv

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the settings, recover jobs of killed workers, and consume the queue until stopped."""
    import torch

    from kospeech.service.db import create_db_engine, session_factory
    from kospeech.service.jobs import JobQueue, Recovery
    from kospeech.service.storage import Storage
    from kospeech.service.training import AdapterJobRunner

    overrides = parse("Run the kospeech personalization service's training jobs.", argv)
    settings = settings_from_argv(overrides, needs_model=True)  # the schema is migrated there
    torch.set_num_threads(settings.torch_threads)
    engine = create_db_engine(settings.database())
    runner = AdapterJobRunner.from_settings(settings)
    queue = JobQueue(settings, session_factory(engine), Storage(settings.data_dir), runner)
    queue.check_at_start()
    recovery = Recovery(queue)
    recovery.start()
    try:
        queue.consumer(workers=1).run()
    finally:
        recovery.stop()
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
