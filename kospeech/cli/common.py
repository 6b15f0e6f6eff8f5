"""Helpers shared by the console scripts: where the Hydra configs are, logging, one-line errors, path resolution."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Set

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from tqdm.auto import tqdm

from kospeech.errors import ConfigError, KospeechError
from kospeech.fileio import atomic_write_text
from kospeech.resources import shipped_candidates
from kospeech.trainer.configs import recipe_settings

__all__ = [
    "setup_logging",
    "absolutize_paths",
    "config_dir",
    "PATH_KEYS",
    "VERBOSE_FLAGS",
    "take_verbose_flag",
    "one_line_errors",
    "exit_on_user_errors",
    "positive_int",
    "own_folder_in_a_sweep",
    "refuse_unknown_settings",
    "command_line_values",
    "refuse_unusable_output_folders",
    "record_resolved_config",
    "config_groups_help",
    "register_help",
    "HELP_RESOLVER",
]

logger = logging.getLogger("kospeech.cli")

VERBOSE_FLAGS = ("-v", "--verbose")
"""Flags the Hydra console scripts take besides Hydra's own: show DEBUG logs, the resolved config and tracebacks."""

_verbose = False

PATH_KEYS = (
    "output_dir",
    "corpus_dir",
    "train_manifest",
    "valid_manifest",
    "vocab_path",
    "base_model_path",
    "init_from",
    "adapter_save_dir",
    "checkpoint_path",
    "manifest_path",
    "adapter_path",
    "adapter_dir",
    "user_map",
    "trunk_cache_dir",
    "out_dir",
)


def config_dir() -> str:
    """The folder of the Hydra YAML configs (``train.yaml``, ``eval.yaml``, ``make_corpus.yaml``, groups).

    A checkout or an editable install (``pip install -e .``) uses the repository's ``configs/``, so edits there take
    effect at once; a regular install uses the copy that ``setup.py`` installs under ``share/kospeech/configs`` of its
    data folder (``sys.prefix``, or the user base of ``pip install --user``): see :mod:`kospeech.resources`.

    Raises:
        FileNotFoundError: no such folder holds ``train.yaml``.
    """
    candidates = shipped_candidates("configs")
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"kospeech's Hydra configs not found; looked in {[str(c) for c in candidates]}")


class _ProgressAwareHandler(logging.StreamHandler):
    """A stderr handler that prints through ``tqdm.write``, so a log line never lands inside a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise; the standard handlers report this way too
            self.handleError(record)


def setup_logging(log_file: Optional[Path] = None, level: Optional[int] = None) -> None:
    """Log to stderr (INFO, or DEBUG after ``-v``) and, when given, everything from DEBUG up to ``log_file``.

    Console lines go through ``tqdm.write`` so they do not break progress bars; the file gets the full detail
    (the resolved config, tracebacks of refused inputs) whatever the console shows.
    """
    console = _ProgressAwareHandler(sys.stderr)
    console.setLevel(level if level is not None else logging.DEBUG if _verbose else logging.INFO)
    handlers: List[logging.Handler] = [console]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    for noisy in ("matplotlib", "PIL", "numba", "urllib3"):  # third-party DEBUG chatter stays out of run logs
        logging.getLogger(noisy).setLevel(logging.WARNING)


def take_verbose_flag(argv: Optional[List[str]] = None) -> bool:
    """Remove ``-v`` / ``--verbose`` from ``argv`` (default ``sys.argv``) before Hydra parses it; remember it.

    Returns:
        Whether the flag was there.
    """
    global _verbose
    argv = sys.argv if argv is None else argv
    found = any(argument in VERBOSE_FLAGS for argument in argv[1:])
    argv[1:] = [argument for argument in argv[1:] if argument not in VERBOSE_FLAGS]
    _verbose = _verbose or found
    return found


def command_line_values(argv: Sequence[str], key: str) -> List[str]:
    """The values a Hydra command line gives ``key`` (as ``key=v``, ``+key=v`` or ``++key=v``), outer quotes removed.

    For checks a CLI makes before Hydra starts: Hydra reports an error raised while it sets up the run (a resolver's,
    making the run folder) with a long traceback, not as one line.
    """
    values = []
    for argument in argv:
        name, equals, value = argument.lstrip("+").partition("=")
        if equals and name == key:
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
            values.append(value[1:-1] if quoted else value)
    return values


def refuse_unusable_output_folders(argv: Sequence[str], key: str) -> None:
    """End the process with one ``error:`` line when the command line gives ``key`` a folder that cannot be made
    (a file in its place or above it: Hydra would fail making its run folder there, with a traceback), or sets
    Hydra's run or sweep folder, which ``key`` decides, to another folder (the run's files would be split between
    the two)."""
    values = command_line_values(argv, key)
    for hydra_key in ("hydra.run.dir", "hydra.sweep.dir"):
        if any(Path(value) not in map(Path, values) for value in command_line_values(argv, hydra_key)):
            sys.exit(f"error: {hydra_key} follows {key} here (the run's files and .hydra/ stay together): set {key}")
    for value in values:
        if "${" in value:  # an interpolation: known only once Hydra resolves it
            continue
        folder = Path(value).expanduser()
        existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
        if existing is not None and not existing.is_dir():
            sys.exit(f"error: {key}={value}: {existing} is a file, so the folder cannot be made there")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--threads 0`` is refused with the option's name)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def record_resolved_config(config: DictConfig, run_dir: Path) -> None:
    """Write the resolved config to ``{run_dir}/config.yaml`` (Hydra's ``.hydra/config.yaml`` keeps the
    interpolations, ``${now:...}`` say, unresolved) and log it at DEBUG (the console shows it with ``-v``)."""
    resolved = OmegaConf.to_yaml(config, resolve=True)
    logger.debug("resolved config:\n%s", resolved)
    logger.info("resolved config: %s", atomic_write_text(Path(run_dir) / "config.yaml", resolved))


def exit_on_user_errors(action: Callable[[], Any], resume_hint: Optional[str] = None) -> Any:
    """Run ``action()``; a user's mistake ends the process with one ``error: ...`` line on stderr and status 1.

    Input and setup errors (a missing or unwritable path, a bad value or override, a missing required key, a run that
    trained nothing) are the user's to fix and need no traceback; it goes to the run log at DEBUG (and to the console
    with ``-v``). Ctrl-C ends with one line and status 130, logged; what was written is whole (atomic writes); a
    command that can go on where it stopped says how in ``resume_hint``. Anything else is a bug and keeps its
    traceback.
    """
    try:
        return action()
    except MissingMandatoryValue as exc:
        logger.debug("missing value", exc_info=True)
        sys.exit(f"error: {exc.full_key} is required and not set (add {exc.full_key}=...)")
    except (KospeechError, OSError, ValueError) as exc:
        logger.debug("the run stopped", exc_info=True)
        sys.exit(f"error: {exc}")
    except (HydraException, OmegaConfBaseException) as exc:  # a bad override: their messages run over lines
        logger.debug("the config was refused", exc_info=True)
        cause = f" ({str(exc.__cause__).splitlines()[0]})" if exc.__cause__ is not None else ""
        sys.exit(f"error: {str(exc).splitlines()[0]}{cause}")
    except KeyboardInterrupt:
        logger.warning("interrupted (Ctrl-C); the files written so far are whole")
        print(
            f"interrupted; the files written so far are whole{f'; {resume_hint}' if resume_hint else ''}",
            file=sys.stderr,
        )
        sys.exit(130)


def one_line_errors(
    task: Callable[[DictConfig], Any], resume_hint: Optional[str] = None
) -> Callable[[DictConfig], Any]:
    """Wrap a Hydra task function with :func:`exit_on_user_errors` (and its ``resume_hint``), after naming every
    required key left unset."""

    @functools.wraps(task)
    def run(config: DictConfig) -> Any:
        missing = sorted(OmegaConf.missing_keys(config))
        if missing:
            sys.exit(f"error: required and not set: {', '.join(missing)} (add {missing[0]}=...)")
        return exit_on_user_errors(lambda: task(config), resume_hint)

    return run


HELP_RESOLVER = "kospeech.config_groups"
"""The OmegaConf resolver the ``--help`` templates of the Hydra scripts use to list their groups' presets."""


def config_groups_help(*groups: str) -> str:
    """``group: preset, preset, ...`` per group, from the YAML files in :func:`config_dir` (schemas left out).

    Hydra's own listing also shows every ``*_schema`` node of the ConfigStore and groups a script does not use.
    """
    root = Path(config_dir())
    lines = []
    for group in groups:
        presets = sorted(path.stem for path in (root / group).glob("*.yaml"))
        lines.append(f"  {group}: {', '.join(presets)}")
    return "\n".join(lines)


def register_help() -> None:
    """Register :data:`HELP_RESOLVER` (once); every Hydra script calls it before ``hydra.main``."""
    if not OmegaConf.has_resolver(HELP_RESOLVER):
        OmegaConf.register_new_resolver(HELP_RESOLVER, config_groups_help)


def refuse_unknown_settings(node: DictConfig, where: str = "") -> None:
    """Refuse a key that the node's schema (a dataclass, at any depth) does not declare: Hydra lets ``+key=value``
    add one, which nothing reads (a misspelled setting then silently keeps its default) or which fails only after
    the run has written its config.

    Raises:
        ConfigError: naming the key as typed (``model.foo``) and its schema.
    """
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    known = {item.name for item in dataclasses.fields(schema)}
    for key, value in node.items_ex(resolve=False):
        name = f"{where}{key}"
        if key not in known:
            raise ConfigError(
                f"{name} is not a setting of {schema.__name__} (+{name}=... adds a key nothing reads): check its spelling"
            )
        if isinstance(value, DictConfig):
            refuse_unknown_settings(value, f"{name}.")


def own_folder_in_a_sweep(config: DictConfig, key: str) -> None:
    """In a Hydra sweep (``-m``), set the output folder ``key`` (``train.output_dir``) to the job's own folder
    (``hydra.sweep.dir/<job number>``, as the configs set it); a single run keeps its own."""
    hydra_config = HydraConfig.get()
    if hydra_config.mode == RunMode.MULTIRUN:
        OmegaConf.update(config, key, hydra_config.runtime.output_dir)


def absolutize_paths(config: DictConfig, keys: Iterable[str] = PATH_KEYS) -> DictConfig:
    """Resolve every relative path field (at any depth) against the directory the command ran from.

    Hydra may change the working directory to its run folder; ``to_absolute_path`` uses the
    original one, so ``train.base_model_path=models/base.pt`` means what the user typed.
    """
    keys = set(keys)
    with open_dict(config):
        for key in list(config.keys()):
            value = config.get(key)
            if isinstance(value, DictConfig):
                absolutize_paths(value, keys)
            elif key in keys and isinstance(value, str) and value and not os.path.isabs(value) and value != "???":
                config[key] = to_absolute_path(value)
    return config


_FROM_THE_BASE = ("audio", "model")
"""Config groups an adapter run does not read: the base checkpoint records them."""


def keys_set_by_preset(group: str) -> Set[str]:
    """The keys that the preset of config group ``group`` chosen in this Hydra run sets in its own file, when that
    file is the user's (found through ``--config-dir``), not the one shipped in :func:`config_dir`.

    Returns:
        The key names (``defaults`` left out); empty for a shipped preset or one that is no file.
    """
    runtime = HydraConfig.get().runtime
    choice = runtime.choices.get(group)
    shipped = (Path(config_dir()) / group / f"{choice}.yaml").resolve()
    for source in runtime.config_sources:  # Hydra's search order: the first folder holding the preset is the one used
        path = Path(source.path) / group / f"{choice}.yaml"
        if source.schema == "file" and path.is_file():
            return (
                set() if path.resolve() == shipped else {str(key) for key in OmegaConf.load(path) if key != "defaults"}
            )
    return set()


def apply_adapter_recipe(train: DictConfig, overrides: Iterable[str], chosen: Iterable[str] = ()) -> dict:
    """Give an adapter job its type's recipe for every ``train.*`` setting the user did not set.

    ``train.adapter_type=encoder`` alone then trains with the encoder's measured settings (bottleneck, learning rates,
    epochs, batch size); ``train.peak_lr=...`` next to it still wins, as does a value the user's own preset file sets
    (``chosen``). The ``head`` type's recipe is the YAML itself.

    Args:
        train: the composed ``train`` node of an adapter job (changed in place).
        overrides: the command line's Hydra overrides (``train.KEY=VALUE``, ``+train.KEY=...``, ``~train.KEY``).
        chosen: other ``train`` settings the user chose (:func:`keys_set_by_preset`).

    Returns:
        The settings the recipe filled in (logged).

    Raises:
        ConfigError: an override of ``audio``, ``model`` or ``data.unit``, which the base checkpoint decides (it
            would be recorded in the run's config and silently not used).
    """
    explicit = set(chosen)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("train."):
            explicit.add(key[len("train.") :])
        elif key.split(".")[0] in _FROM_THE_BASE or key == "data.unit":
            raise ConfigError(
                f"{override}: an adapter run takes its features, architecture and output units from its base "
                "checkpoint (train.base_model_path); the adapter is set with train.adapter_type, "
                "train.adapter_hidden_dims, train.adapter_bottleneck_dim"
            )
    settings = recipe_settings(train.adapter_type, explicit)
    for key, value in settings.items():
        train[key] = value
    if settings:
        logger.info(
            "adapter_type=%s: its recipe sets %s",
            train.adapter_type,
            ", ".join(f"{key}={value}" for key, value in settings.items()),
        )
    return settings
