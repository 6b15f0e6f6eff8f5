"""SPEC section 1's import direction, checked statically on every module (imports inside functions included).

``bin/`` -> ``trainer/``, ``inference/`` -> ``models/``, ``data/``, ``decode/`` -> ``vocabs/``: a layer may import the
layers below it, never above or sideways. ``if TYPE_CHECKING:`` blocks are not imports at run time and are skipped.
"""

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kospeech"
HIGHER = ("kospeech.trainer", "kospeech.inference", "kospeech.cli", "kospeech.service", "kospeech.demo")

RULES = [
    # (what is scanned, relative to kospeech/; modules it must not import, matched on dot boundaries)
    ("models", ("kospeech.data", "kospeech.evaluation", "kospeech.checkpoint", *HIGHER)),
    ("data", ("kospeech.models", "kospeech.model_builder", "kospeech.evaluation", *HIGHER)),
    ("decode", ("kospeech.models", "kospeech.data", "kospeech.evaluation", *HIGHER)),
    ("vocabs", ("kospeech.models", "kospeech.data", "kospeech.decode", "kospeech.evaluation", *HIGHER)),
    ("inference", ("kospeech.trainer", "kospeech.cli", "kospeech.service", "kospeech.demo")),
    ("trainer", ("kospeech.inference", "kospeech.cli", "kospeech.service", "kospeech.demo")),
    ("evaluation.py", HIGHER),
    ("errors.py", ("kospeech",)),
    ("device.py", ("kospeech",)),
    (".", ("bin",)),
]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (item for child in node.orelse for item in _imports(ast.Module(body=[child], type_ignores=[])))
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        yield from _imports(node)


def _files(scanned: str) -> List[Path]:
    target = PACKAGE / scanned
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def _violates(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(forbidden + ".")


@pytest.mark.parametrize("scanned, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_layer_imports_point_down(scanned, forbidden):
    files = _files(scanned)
    assert files and all(path.is_file() for path in files), f"kospeech/{scanned} holds no Python file: rule is stale"
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in _imports(tree):
            for name in forbidden:
                if _violates(module, name):
                    problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} (not allowed: {name})")
    assert not problems, "\n".join(problems)


def test_only_the_console_layer_imports_the_cli():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative.name == "__main__.py":
            continue
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if _violates(module, "kospeech.cli"):
                problems.append(f"kospeech/{relative}:{line} imports {module}")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking_blocks():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import kospeech.trainer\n"
        "def f():\n    from kospeech.trainer import x\n"
    )
    found = [module for _, module in _imports(ast.parse(source))]
    assert found == ["typing", "kospeech.trainer"]
