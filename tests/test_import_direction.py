"""SPEC section 1's import direction, checked statically on every module of ``kospeech/``.

``bin/`` -> ``trainer/``, ``inference`` -> ``models/``, ``data/``, ``decode/`` -> ``vocabs/``: a layer may import the
layers below it and the leaf helpers (``errors``, ``fileio``, ``text_files``, ``device``, ``metrics``, ``progress``, the
package root), never a layer above or beside it. Spelled out by SPEC: ``models/`` never imports ``trainer/`` or ``data/``, ``data/`` never
imports ``models/``, ``inference`` never imports ``trainer/``, nothing under ``kospeech/`` imports ``bin/``.

Every form of import counts: ``import a.b``, ``from a import b`` (``b`` resolved to a submodule when it is one),
relative imports, imports inside functions and ``importlib.import_module("a.b")`` with a literal name. Only
``if TYPE_CHECKING:`` blocks are skipped: they never run. Each rule is checked on direct imports (the message names
file, line and module) and on everything those imports load in turn (the message gives the chain).
"""

import ast
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "kospeech"
BIN = REPO / "bin"

ROOT = "kospeech"  # the package root; it holds only __version__ and is kept a leaf by the "package root" rule
LEAVES = (
    "kospeech.errors",
    "kospeech.fileio",
    "kospeech.text_files",
    "kospeech.device",
    "kospeech.metrics",
    "kospeech.progress",
)
UPPER = ("kospeech.trainer", "kospeech.inference", "kospeech.cli", "kospeech.service", "kospeech.demo")
# Named by SPEC (section 7) but not written yet: a rule may forbid them before they exist.
PLANNED = ("kospeech.service",)
# bin/ is not a package: with bin/ on sys.path its shims would import as top-level modules (``import _checkout``).
BIN_MODULES = ("bin", *sorted(path.stem for path in BIN.glob("*.py")))


@dataclass(frozen=True)
class Rule:
    name: str
    scanned: Tuple[str, ...]  # relative to kospeech/; alternatives, every one that exists is scanned
    forbidden: Tuple[str, ...] = ()  # never imported (matched on dot boundaries)
    allowed: Optional[Tuple[str, ...]] = None  # when set, the only kospeech modules it may import (ROOT: exactly)
    why: str = ""


RULES = [
    Rule(
        "models",
        ("models",),
        forbidden=("kospeech.trainer", "kospeech.data"),
        allowed=("kospeech.models", "kospeech.vocabs", ROOT, *LEAVES),
        why="SPEC: models/ never imports trainer/ or data/ (a model takes tensors); it sits above vocabs/ only",
    ),
    Rule(
        "data",
        ("data",),
        forbidden=("kospeech.models",),
        allowed=("kospeech.data", "kospeech.vocabs", ROOT, *LEAVES),
        why="SPEC: data/ never imports models/; it sits above vocabs/ only",
    ),
    Rule(
        "decode",
        ("decode",),
        allowed=("kospeech.decode", "kospeech.vocabs", ROOT, "kospeech.errors", "kospeech.fileio", "kospeech.metrics"),
        why="SPEC chain: decode/ -> vocabs/ (plus the error, file and metric helpers)",
    ),
    Rule(
        "vocabs",
        ("vocabs",),
        allowed=("kospeech.vocabs", ROOT, "kospeech.errors", "kospeech.fileio", "kospeech.text_files"),
        why="SPEC chain: vocabs/ is the bottom layer; only the error and file helpers are below it",
    ),
    Rule(
        "inference",
        ("inference", "inference.py"),
        forbidden=("kospeech.trainer", "kospeech.cli", "kospeech.service", "kospeech.demo"),
        why="SPEC: inference never imports trainer/ (nor the console, service or demo layers above it)",
    ),
    Rule(
        "trainer",
        ("trainer",),
        forbidden=("kospeech.inference", "kospeech.cli", "kospeech.service", "kospeech.demo"),
        why="SPEC chain: trainer/ and inference sit side by side under bin/; neither imports the other",
    ),
    Rule(
        "evaluation",
        ("evaluation.py",),
        forbidden=UPPER,
        why="shared by trainer/ and inference, so it imports neither (the Recognizer type is TYPE_CHECKING only)",
    ),
    Rule("errors", ("errors.py",), allowed=(), why="the leaf of every import chain"),
    Rule("package root", ("__init__.py",), allowed=(), why="importing kospeech itself must load nothing else"),
    Rule("fileio", ("fileio.py",), allowed=("kospeech.errors",), why="leaf helper: atomic saves, safe loads"),
    Rule("device", ("device.py",), allowed=(), why="leaf helper: device names"),
    Rule("metrics", ("metrics.py",), allowed=(), why="leaf helper: CER / WER"),
    Rule(
        "no bin",
        (".",),
        forbidden=BIN_MODULES,
        why="SPEC: nothing under kospeech/ imports bin/ (bin/*.py are shims over the library)",
    ),
]


# ----------------------------------------------------------------------------------------------------------------
# The checker


def _within(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def _is_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (dotted == "bin" and base.is_dir())


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(dotted: str) -> Optional[Path]:
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and PACKAGE in candidate.parents:
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _from_base(node: ast.ImportFrom, importer: Optional[str], is_package: bool) -> Optional[str]:
    if node.level == 0:
        return node.module
    if importer is None:
        return None
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _literal_import_call(node: ast.Call) -> Optional[str]:
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )
    if named and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        if not node.args[0].value.startswith("."):
            return node.args[0].value
    return None


def _imports(tree: ast.AST, importer: Optional[str] = None, is_package: bool = False) -> Iterator[Tuple[int, str]]:
    """(line, module) for every import that can run; ``from a import b`` gives ``a.b`` when that is a module."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), importer, is_package)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, importer, is_package)
            if base:
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    yield node.lineno, submodule if alias.name != "*" and _is_module(submodule) else base
        elif isinstance(node, ast.Call):
            literal = _literal_import_call(node)
            if literal:
                yield node.lineno, literal
        yield from _imports(node, importer, is_package)


@cache
def _file_imports(path: Path) -> Tuple[Tuple[int, str], ...]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return tuple(_imports(tree, _module_name(path), path.name == "__init__.py"))


def _scanned_targets(rule: Rule) -> List[Path]:
    return [PACKAGE / name for name in rule.scanned if (PACKAGE / name).exists()]


def _files(rule: Rule) -> List[Path]:
    files: List[Path] = []
    for target in _scanned_targets(rule):
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


def _breach(rule: Rule, module: str) -> Optional[str]:
    for name in rule.forbidden:
        if _within(module, name):
            return f"forbidden: {name}"
    if rule.allowed is not None and _within(module, ROOT):
        if not any(module == ROOT if name == ROOT else _within(module, name) for name in rule.allowed):
            return "allowed only: " + (", ".join(rule.allowed) or "nothing of kospeech")
    return None


def _loaded(module: str) -> Iterator[str]:
    """What ``import module`` executes: every enclosing package, then the module.

    The package root is left out: every kospeech import loads it, and the "package root" rule keeps it a leaf.
    """
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        if ".".join(parts[:end]) != ROOT:
            yield ".".join(parts[:end])


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


# ----------------------------------------------------------------------------------------------------------------
# The rules


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_rule_scans_real_code(rule):
    """A renamed folder must not make a rule pass silently; every kospeech module a rule names must exist."""
    targets = _scanned_targets(rule)
    assert targets, f"rule {rule.name!r}: none of kospeech/{{{', '.join(rule.scanned)}}} exists: the rule is stale"
    for target in targets:
        assert target.is_file() or any(target.rglob("*.py")), f"rule {rule.name!r}: {target} holds no Python file"
    named = [name for name in (*rule.forbidden, *(rule.allowed or ())) if _within(name, ROOT) and name != ROOT]
    missing = [name for name in named if name not in PLANNED and not _is_module(name)]
    assert not missing, f"rule {rule.name!r} names modules that do not exist: {missing}"


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_direct_imports_follow_the_direction(rule):
    problems = [
        f"{_where(path, line)} imports {module} ({breach}; {rule.why})"
        for path in _files(rule)
        for line, module in _file_imports(path)
        for breach in [_breach(rule, module)]
        if breach
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_indirect_imports_follow_the_direction(rule):
    """What the scanned code's kospeech imports load in turn obeys the same rule (else the rule is a formality)."""
    own = {_module_name(path) for path in _files(rule)}
    chains: Dict[str, str] = {}
    queue = deque()
    for path in _files(rule):
        for line, module in _file_imports(path):
            for loaded in _loaded(module):
                if loaded not in own and loaded not in chains and _module_file(loaded):
                    chains[loaded] = f"{_where(path, line)} imports {module}"
                    queue.append(loaded)
    problems = []
    while queue:
        current = queue.popleft()
        breach = _breach(rule, current)
        if breach:
            problems.append(f"{chains[current]} ({current}: {breach}; {rule.why})")
            continue  # the direct test or the loaded module's own rule reports what lies beyond
        path = _module_file(current)
        for line, module in _file_imports(path):
            for loaded in _loaded(module):
                if loaded not in own and loaded not in chains and _module_file(loaded):
                    chains[loaded] = f"{chains[current]} -> {_where(path, line)} imports {module}"
                    queue.append(loaded)
    assert not problems, "\n".join(problems)


def test_only_the_console_layer_imports_the_cli():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative.name == "__main__.py":
            continue
        for line, module in _file_imports(path):
            if _within(module, "kospeech.cli"):
                problems.append(f"{_where(path, line)} imports {module}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------------
# The checker itself


def _found(source: str, importer: str = "kospeech.models.example", is_package: bool = False) -> List[str]:
    return [module for _, module in _imports(ast.parse(source), importer, is_package)]


def test_checker_sees_imports_inside_functions_and_skips_type_checking_blocks():
    source = (
        "import typing\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import kospeech.trainer\nelse:\n    import kospeech.errors\n"
        "if typing.TYPE_CHECKING:\n    from kospeech.data import features\n"
        "def f():\n    from kospeech.trainer import x\n"
        "class C:\n    def g(self):\n        import kospeech.data.features\n"
    )
    assert _found(source) == ["typing", "typing", "kospeech.errors", "kospeech.trainer", "kospeech.data.features"]


def test_checker_resolves_submodules_relative_imports_and_literal_import_module():
    source = (
        "from kospeech import trainer, __version__\n"
        "from .. import data\n"
        "from ..decode import greedy\n"
        "from . import adapter\n"
        "import importlib\n"
        "importlib.import_module('kospeech.trainer.recipes')\n"
        "from bin import main\n"
    )
    assert _found(source) == [
        "kospeech.trainer",
        "kospeech",
        "kospeech.data",
        "kospeech.decode.greedy",
        "kospeech.models.adapter",
        "importlib",
        "kospeech.trainer.recipes",
        "bin.main",
    ]
    assert _found("from . import adapter\n", importer="kospeech.models", is_package=True) == ["kospeech.models.adapter"]


def test_checker_rules_catch_what_they_should():
    models, vocabs, no_bin = (
        next(rule for rule in RULES if rule.name == name) for name in ("models", "vocabs", "no bin")
    )
    assert _breach(models, "kospeech.data.features") and _breach(models, "kospeech.trainer")
    assert _breach(models, "kospeech.decode") and not _breach(models, "kospeech.vocabs")
    assert not _breach(models, "kospeech") and not _breach(models, "torch") and not _breach(models, "kospeech.models")
    assert _breach(vocabs, "kospeech.models") and not _breach(vocabs, "kospeech.errors")
    assert _breach(no_bin, "bin.main") and _breach(no_bin, "_checkout") and not _breach(no_bin, "binascii")
