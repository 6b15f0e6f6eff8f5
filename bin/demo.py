"""``python bin/demo.py ...`` = ``kospeech-demo ...``: the main job behind `make demo`; see kospeech/cli/demo.py."""

import _checkout  # noqa: F401  (this checkout first on sys.path)
from kospeech.cli.demo import main

raise SystemExit(main())
