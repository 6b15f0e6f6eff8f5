"""``python bin/inference.py ...`` = ``kospeech-transcribe ...``: transcribe audio files, optionally with per-user adapters; see kospeech/cli/transcribe.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.transcribe import main

raise SystemExit(main())
