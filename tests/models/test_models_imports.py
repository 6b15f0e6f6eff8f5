"""kospeech.models (and model_builder) never import the data, trainer or vocabs packages."""

import ast
from pathlib import Path

FORBIDDEN = ("kospeech.data", "kospeech.trainer", "kospeech.vocabs")
ROOT = Path(__file__).resolve().parents[2] / "kospeech"


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_models_import_no_data_trainer_or_vocabs():
    files = sorted((ROOT / "models").glob("*.py")) + [ROOT / "model_builder.py"]
    assert len(files) >= 6
    offending = [
        f"{path.name}: {module}"
        for path in files
        for module in _imported_modules(path)
        if any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)
    ]
    assert offending == []
