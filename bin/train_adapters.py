"""``python bin/train_adapters.py ...`` = ``kospeech-train-adapters ...``: train many users' adapters in one process; see kospeech/cli/train_adapters.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.train_adapters import main

raise SystemExit(main())
