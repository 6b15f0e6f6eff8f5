"""Console scripts: one module per command, each with a ``main()`` (``setup.py`` declares the entry points).

| command | module | checkout shim |
|---|---|---|
| ``kospeech-train`` | :mod:`kospeech.cli.train` | ``bin/main.py`` |
| ``kospeech-eval`` | :mod:`kospeech.cli.eval` | ``bin/eval.py`` |
| ``kospeech-transcribe`` | :mod:`kospeech.cli.transcribe` | ``bin/inference.py`` |
| ``kospeech-train-adapters`` | :mod:`kospeech.cli.train_adapters` | ``bin/train_adapters.py`` |
| ``kospeech-make-corpus`` | :mod:`kospeech.cli.make_corpus` | ``bin/make_corpus.py`` |
| ``kospeech-preprocess-kspon`` | :mod:`kospeech.cli.preprocess_kspon` | ``bin/preprocess_ksponspeech.py`` |
| ``kospeech-demo`` | :mod:`kospeech.cli.demo` | ``bin/demo.py`` |
| ``kospeech-serve`` | :mod:`kospeech.cli.serve` | - |
| ``kospeech-worker`` | :mod:`kospeech.cli.worker` | - |
| ``kospeech-keys`` | :mod:`kospeech.cli.keys` | - |

``python -m kospeech COMMAND ...`` runs the same commands (:mod:`kospeech.__main__`). The helpers shared by the
commands live in :mod:`kospeech.cli.common`.
"""

from kospeech.cli.common import PATH_KEYS, absolutize_paths, config_dir, setup_logging

COMMANDS = {
    "train": "kospeech.cli.train",
    "eval": "kospeech.cli.eval",
    "transcribe": "kospeech.cli.transcribe",
    "train-adapters": "kospeech.cli.train_adapters",
    "make-corpus": "kospeech.cli.make_corpus",
    "preprocess-kspon": "kospeech.cli.preprocess_kspon",
    "demo": "kospeech.cli.demo",
    "serve": "kospeech.cli.serve",
    "worker": "kospeech.cli.worker",
    "keys": "kospeech.cli.keys",
}
"""``python -m kospeech`` command -> module with the ``main()``; console scripts are ``kospeech-<command>``."""

__all__ = ["COMMANDS", "PATH_KEYS", "absolutize_paths", "config_dir", "setup_logging"]
