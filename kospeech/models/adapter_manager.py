"""Save, load, inspect, list and delete per-user adapter files.

An adapter file is ``{save_dir}/{adapter_name}_adapter.pt``: a plain dict that ``torch.load(weights_only=True)``
reads, holding only the adapter's weights plus what is needed to rebuild and check it:

========================  =========================================================================
``format_version``        int, 1
``adapter_name``          str, the name it was saved under
``adapter_type``          a registered type: ``"head"``, ``"residual_head"``, ``"encoder"``, ...
``adapter_state_dict``    {str: Tensor}, keys relative to the adapter (``'0.weight'``, ``'layers.0.up.bias'``)
``input_dim``             int, RNN output size the adapter reads
``hidden_dims``           list[int], MLP hidden sizes; ``[bottleneck_dim]`` for ``encoder``
                          (``[bottleneck_dim, extractor_bottleneck_dim]`` with an extractor part)
``output_dim``            int, classes for the head types; the RNN output size for ``encoder``
``dropout_p``             float
``num_layers``            int for ``encoder`` (RNN layers adapted), None for the head types
``base_fingerprint``      str, :meth:`DeepSpeech2.base_fingerprint` of the base it was trained on
``vocab_fingerprint``     str or None, the vocabulary's fingerprint
``feature_config``        dict or None, the feature extraction settings (plain values)
``created_at``            str, ISO 8601 UTC time of saving
``kospeech_version``      str
``training_stats``        dict of plain values (e.g. utterances, audio_seconds, cer_before, cer_after)
``rejected``              bool, optional (absent: False): training judged it no better than the base on the
                          user's held-out utterances, so it must not be served (kept for inspection)
``rejected_reason``       str or None, optional: why
``extractor_dim``         int or None, optional (absent: None): ``encoder`` adapters with a part on the
                          extractor's output record its width (files written before it existed have none)
========================  =========================================================================

Names are validated before any path is built, lookups use the exact file name (``an4`` never matches
``an4_v2``), files are written atomically and read with the weights-only loader, and a symlink that resolves
outside its directory is not followed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from omegaconf import DictConfig
from torch import nn

import kospeech
from kospeech.errors import CheckpointError, InputError, InvalidNameError, name_list
from kospeech.fileio import atomic_torch_save, atomic_write, plain_values, safe_torch_load
from kospeech.models.adapter import AdapterModule, build_adapter, registered_adapter_types
from kospeech.models.deepspeech2 import AdapterCompatibilityError, DeepSpeech2
from kospeech.models.utils import state_dict_problems, unwrap_model

__all__ = [
    "AdapterManager",
    "AdapterCompatibilityError",
    "validate_adapter_name",
    "FORMAT_VERSION",
    "ADAPTER_FILE_SUFFIX",
    "MAX_ADAPTER_NAME_LENGTH",
    "MAX_ADAPTER_WEIGHT",
    "VERSIONS_DIR_NAME",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

FORMAT_VERSION = 1
ADAPTER_FILE_SUFFIX = "_adapter.pt"
MAX_ADAPTER_NAME_LENGTH = 64
MAX_ADAPTER_WEIGHT = 1e4
"""Largest magnitude an adapter weight may hold: trained adapters stay below 10; a file beyond is damaged or hostile."""
MAX_ADAPTER_LAYERS = 1024
"""Most RNN layers an adapter file may claim (the spec's base has 5; each claimed layer is built to check the file)."""
VERSIONS_DIR_NAME = "versions"
_VERSION_TRIES = 1000
"""Version numbers tried in turn before keeping a version gives up (each lost to a writer racing for it)."""
_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME_RULE = (
    f"is 1 to {MAX_ADAPTER_NAME_LENGTH} ASCII letters, digits, '_', '.' or '-', "
    "does not start with '.' and does not contain '..'"
)

_NONE = type(None)
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {
    "adapter_name": (str,),
    "adapter_type": (str,),
    "adapter_state_dict": (dict,),
    "input_dim": (int,),
    "hidden_dims": (list,),
    "output_dim": (int,),
    "dropout_p": (int, float),
    "num_layers": (int, _NONE),
    "base_fingerprint": (str,),
    "vocab_fingerprint": (str, _NONE),
    "feature_config": (dict, _NONE),
    "created_at": (str,),
    "kospeech_version": (str,),
    "training_stats": (dict,),
}
_OPTIONAL_FIELD_TYPES: Dict[str, Tuple[Tuple[type, ...], Any]] = {
    "rejected": ((bool,), False),
    "rejected_reason": ((str, _NONE), None),
    "extractor_dim": ((int, _NONE), None),
}


def validate_adapter_name(name: str, what: str = "adapter name") -> str:
    """Check an adapter name before it becomes part of a path.

    Args:
        name: the candidate name.
        what: what the name is called in the error (the service's user ids and tenant names follow the same rule).

    Returns:
        ``name`` unchanged.

    Raises:
        InvalidNameError: (a ValueError) the name breaks the rule: 1 to 64 ASCII characters from ``[A-Za-z0-9_.-]``, not starting
            with ``'.'``, no ``'..'`` (so no path separators, NUL bytes or look-alike Unicode letters).
    """
    article = "an" if what[0] in "aeio" else "a"  # "a user id"
    if not isinstance(name, str):
        raise InvalidNameError(f"invalid {what} {name!r}: {article} {what} {_NAME_RULE}")
    if (
        not name
        or len(name) > MAX_ADAPTER_NAME_LENGTH
        or any(character not in _NAME_CHARACTERS for character in name)
        or name.startswith(".")
        or ".." in name
    ):
        shown = name if len(name) <= 80 else f"{name[:77]}..."
        raise InvalidNameError(f"invalid {what} {shown!r}: {article} {what} {_NAME_RULE}")
    return name


def _name_from_file_name(file_name: str) -> Optional[str]:
    """The adapter name of ``'<name>_adapter.pt'``, or None when the file name does not have that form."""
    if not file_name.endswith(ADAPTER_FILE_SUFFIX):
        return None
    name = file_name[: -len(ADAPTER_FILE_SUFFIX)]
    try:
        return validate_adapter_name(name)
    except InvalidNameError:
        return None


def _check_inside(path: Path, directory: Path) -> None:
    """Refuse ``path`` when it (through symlinks) resolves outside ``directory``."""
    resolved = path.resolve()
    root = directory.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(f"{path} is a link to {resolved}, outside {root}; refusing to follow it")


def _version_number(entry: Path) -> Optional[int]:
    """The number of a kept version's name (``NNNNNN.pt``), else ``None`` (ASCII digits only: ``isdigit`` also takes
    "²", which ``int`` refuses)."""
    stem = entry.stem
    return int(stem) if entry.suffix == ".pt" and stem.isascii() and stem.isdigit() else None


def _dict_differences(stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "") -> List[str]:
    differences = []
    for key in sorted(set(stored) | set(given), key=str):  # a file's keys may be of any plain type
        name = f"{prefix}{key}"
        if key not in stored:
            differences.append(f"{name}: not in the file, given {given[key]!r}")
        elif key not in given:
            differences.append(f"{name}: file has {stored[key]!r}, not given")
        elif isinstance(stored[key], Mapping) and isinstance(given[key], Mapping):
            differences += _dict_differences(stored[key], given[key], prefix=f"{name}.")
        elif stored[key] != given[key]:
            differences.append(f"{name}: file has {stored[key]!r}, given {given[key]!r}")
    return differences


def _unwrap(model: nn.Module) -> DeepSpeech2:
    model = unwrap_model(model)
    if not isinstance(model, DeepSpeech2):
        raise TypeError(f"expected a DeepSpeech2 model (optionally wrapped), got {type(model).__name__}")
    return model


def _is_main_process() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def _read_adapter_file(path: Path, build: bool = True) -> Tuple[Dict[str, Any], Optional[AdapterModule]]:
    """Load and validate an adapter file; returns its content and the adapter rebuilt with its weights.

    With ``build=False`` the weights are checked against a memory-less skeleton only and no module is returned
    (what describing a file needs: a fraction of the time, for folders of thousands of adapters).
    """
    _check_inside(path, path.parent)
    content = safe_torch_load(path, what="adapter")
    version = content.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: not a kospeech adapter file (no integer 'format_version')")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: adapter format_version {version} is not supported; this kospeech reads {FORMAT_VERSION}"
        )
    for key in _FIELD_TYPES:
        if key not in content:
            raise CheckpointError(f"{path}: adapter file lacks the field {key!r}")
    optional = {key: types for key, (types, _) in _OPTIONAL_FIELD_TYPES.items() if key in content}
    for key, types in {**_FIELD_TYPES, **optional}.items():
        value = content[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            allowed = " or ".join("None" if kind is _NONE else kind.__name__ for kind in types)
            raise CheckpointError(f"{path}: field {key!r} must be {allowed}, found {type(value).__name__}")
    if content["adapter_type"] not in registered_adapter_types():
        raise CheckpointError(
            f"{path}: unknown adapter_type {content['adapter_type']!r}; "
            f"known types are {list(registered_adapter_types())}"
        )
    sizes = (
        content["adapter_type"],
        content["input_dim"],
        content["hidden_dims"],
        content["output_dim"],
        content["dropout_p"],
        content["num_layers"],
        content.get("extractor_dim"),
    )
    state_dict = content["adapter_state_dict"]
    # refused before a module is built per layer: 10**9 of them would never finish
    if isinstance(content["num_layers"], int) and not 0 < content["num_layers"] <= MAX_ADAPTER_LAYERS:
        raise CheckpointError(
            f"{path}: invalid adapter sizes: num_layers {content['num_layers']} is outside 1..{MAX_ADAPTER_LAYERS}"
        )
    try:
        # built without memory first: recorded sizes the stored weights do not back allocate nothing
        with torch.device("meta"):
            skeleton = build_adapter(*sizes)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:  # torch: "storage size ... overflowed"
        raise CheckpointError(f"{path}: invalid adapter sizes: {exc}") from exc
    missing, unexpected, mismatched = state_dict_problems(skeleton.state_dict(), state_dict)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or key in unexpected:
            continue
        if not value.is_floating_point():
            mismatched.append(f"{key}: expected a floating point tensor, found {value.dtype}")
        elif not bool(torch.isfinite(value).all()):
            mismatched.append(f"{key}: holds NaN/Inf values")
        elif value.numel() and float(value.abs().max()) > MAX_ADAPTER_WEIGHT:
            mismatched.append(
                f"{key}: holds |w| = {float(value.abs().max()):.3g} beyond {MAX_ADAPTER_WEIGHT:g} (trained adapters "
                "stay far below; such weights saturate every output)"
            )
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: adapter weights do not match a {content['adapter_type']!r} adapter of the recorded sizes: "
            f"missing keys {missing}, unexpected keys {unexpected}, mismatched entries {mismatched}"
        )
    if not build:
        return content, None
    adapter = build_adapter(*sizes)
    adapter.load_state_dict(state_dict, strict=True)
    return content, adapter


def _info(path: Path, content: Mapping[str, Any]) -> Dict[str, Any]:
    info = {key: value for key, value in content.items() if key != "adapter_state_dict"}
    for key, (_, default) in _OPTIONAL_FIELD_TYPES.items():
        info.setdefault(key, default)
    info["name"] = _name_from_file_name(path.name) or content["adapter_name"]
    info["path"] = str(path)
    info["num_parameters"] = sum(value.numel() for value in content["adapter_state_dict"].values())
    return info


class AdapterManager:
    """Static helpers for adapter files; see the module docstring for the file format."""

    @staticmethod
    def adapter_file(save_dir: PathLike, adapter_name: str) -> Path:
        """Path ``{save_dir}/{adapter_name}_adapter.pt`` after validating the name (the file need not exist)."""
        return Path(save_dir) / f"{validate_adapter_name(adapter_name)}{ADAPTER_FILE_SUFFIX}"

    @staticmethod
    def adapter_names(save_dir: PathLike) -> List[str]:
        """Sorted names of the files ``<name>_adapter.pt`` in ``save_dir`` (files are not opened; a folder or a link to
        nothing under such a name is no adapter)."""
        save_dir = Path(save_dir)
        if not save_dir.is_dir():
            raise FileNotFoundError(f"adapter directory not found: {save_dir}")
        names = (_name_from_file_name(entry.name) for entry in save_dir.iterdir() if entry.is_file())
        return sorted(name for name in names if name is not None)

    @staticmethod
    def find_adapter(save_dir: PathLike, adapter_name: str, list_available: bool = True) -> Path:
        """The file of adapter ``adapter_name`` in ``save_dir``, matched by exact name (one ``stat``, no listing).

        Args:
            save_dir: the adapter folder.
            adapter_name: the exact name.
            list_available: on a miss, list the folder to name what exists (the first 20 names and a count); a
                caller that falls back to the base model on a miss passes ``False`` and never lists the folder.

        Raises:
            ValueError: invalid name, or the file is a link that resolves outside ``save_dir``.
            FileNotFoundError: no such adapter.
        """
        path = AdapterManager.adapter_file(save_dir, adapter_name)
        if not path.is_file():
            message = f"no adapter named {adapter_name!r} in {save_dir}"
            if list_available:
                message += f"; available: {name_list(AdapterManager.adapter_names(save_dir))}"
            raise FileNotFoundError(message)
        _check_inside(path, Path(save_dir))
        return path

    @staticmethod
    def save_adapter(
        model: nn.Module,
        save_path: PathLike,
        adapter_name: str,
        *,
        vocab_fingerprint: Optional[str] = None,
        feature_config: Optional[Mapping[str, Any]] = None,
        training_stats: Optional[Mapping[str, Any]] = None,
        adapter: Optional[nn.Module] = None,
        rejected: Optional[str] = None,
        as_version: bool = False,
    ) -> Path:
        """Write the model's adapter to ``{save_path}/{adapter_name}_adapter.pt`` atomically.

        Under ``torch.distributed`` only rank 0 writes; other ranks return the path without writing.

        Args:
            model: a :class:`DeepSpeech2` with an adapter, possibly wrapped in DataParallel / DDP.
            save_path: directory for the file (created if missing).
            adapter_name: the adapter's name (see :func:`validate_adapter_name`).
            vocab_fingerprint: the vocabulary's fingerprint, checked again on loading.
            feature_config: the feature settings as plain values (e.g. ``FeatureConfig.to_dict()`` or a
                DictConfig), checked again on loading.
            training_stats: plain values such as ``utterances``, ``audio_seconds``, ``cer_before``, ``cer_after``.
            adapter: an adapter module trained on ``model``'s base without being attached to it (one of many users'
                adapters); default: the model's attached adapter.
            rejected: why this adapter must not be served (it is no better than the base on the user's held-out
                utterances), recorded as ``rejected: True`` and ``rejected_reason``; ``None`` for an accepted one.
            as_version: write it as the next kept version (``versions/<name>/NNNNNN.pt``, see :meth:`list_versions`)
                and leave the active file alone.

        Returns:
            The file's path.
        """
        name = validate_adapter_name(adapter_name)
        base = _unwrap(model)
        adapter = base.adapter if adapter is None else adapter
        if adapter is None:
            raise ValueError("the model has no adapter to save; build it with use_adapter=True or call add_adapter()")
        base.check_adapter_fits(adapter)
        if vocab_fingerprint is not None and not isinstance(vocab_fingerprint, str):
            raise TypeError(f"vocab_fingerprint must be a str or None, got {type(vocab_fingerprint).__name__}")
        if feature_config is not None and not isinstance(feature_config, (Mapping, DictConfig)):
            raise TypeError(f"feature_config must be a dict or None, got {type(feature_config).__name__}")
        if training_stats is not None and not isinstance(training_stats, (Mapping, DictConfig)):
            raise TypeError(f"training_stats must be a dict or None, got {type(training_stats).__name__}")
        if rejected is not None and not (isinstance(rejected, str) and rejected):
            raise TypeError(f"rejected must be a non-empty reason (str) or None, got {rejected!r}")
        path = (
            AdapterManager._next_version(save_path, name)
            if as_version
            else AdapterManager.adapter_file(save_path, name)
        )
        content: Dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "adapter_name": name,
            **adapter.adapter_config(),
            "adapter_state_dict": {
                key: value.detach().to("cpu").clone() for key, value in adapter.state_dict().items()
            },
            "base_fingerprint": base.base_fingerprint(),
            "vocab_fingerprint": vocab_fingerprint,
            "feature_config": None
            if feature_config is None
            else plain_values(feature_config, "feature_config", "an adapter file"),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kospeech_version": kospeech.__version__,
            "training_stats": plain_values(training_stats or {}, "training_stats", "an adapter file"),
            "rejected": rejected is not None,
            "rejected_reason": rejected,
        }
        if not _is_main_process():
            return path
        if as_version:
            serialized = io.BytesIO()
            torch.save(content, serialized)
            path = AdapterManager._write_next_version(save_path, name, serialized.getvalue())
        else:
            atomic_torch_save(content, path)
        logger.debug("saved %s adapter %r to %s", content["adapter_type"], name, path)
        return path

    @staticmethod
    def get_adapter_info(adapter_path: PathLike) -> Dict[str, Any]:
        """Describe an adapter file without a model.

        Args:
            adapter_path: the ``.pt`` file.

        Returns:
            Every field of the file except the weights (``rejected`` False and ``rejected_reason`` None for files
            that do not record them), plus ``name`` (the name the file is found under, i.e. the ``<name>`` of
            ``<name>_adapter.pt``, else the recorded ``adapter_name``), ``path`` and ``num_parameters``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a valid adapter file (including pickles the weights-only loader refuses).
        """
        path = Path(adapter_path)
        return _info(path, _read_adapter_file(path, build=False)[0])

    @staticmethod
    def read_adapter(adapter_path: PathLike) -> Tuple[AdapterModule, Dict[str, Any]]:
        """Read an adapter file into a module, without a model (state extraction apart from file I/O).

        Args:
            adapter_path: the ``.pt`` file.

        Returns:
            ``(adapter, info)``: the rebuilt adapter with the file's weights, in eval mode on the CPU, and
            :meth:`get_adapter_info`'s dict. Check it against a base with :meth:`check_compatibility` and
            :meth:`DeepSpeech2.check_adapter_fits` before serving it.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a valid adapter file (including pickles the weights-only loader refuses).
        """
        path = Path(adapter_path)
        content, adapter = _read_adapter_file(path)
        return adapter.eval(), _info(path, content)

    @staticmethod
    def check_compatibility(
        info: Mapping[str, Any],
        *,
        base_fingerprint: str,
        vocab_fingerprint: Optional[str] = None,
        feature_config: Optional[Mapping[str, Any]] = None,
        force: bool = False,
    ) -> List[str]:
        """Compare an adapter's recorded base, vocabulary and features with the ones it is about to serve.

        Args:
            info: :meth:`read_adapter`'s (or :meth:`get_adapter_info`'s) dict.
            base_fingerprint: :meth:`DeepSpeech2.base_fingerprint` of the base.
            vocab_fingerprint: the current vocabulary's fingerprint, or None to skip that check.
            feature_config: the current feature settings (plain dict), or None to skip that check.
            force: return the differences (logged as a warning) instead of raising.

        Returns:
            The differences overridden by ``force`` (empty when everything matches).

        Raises:
            AdapterCompatibilityError: the adapter was made for another base, vocabulary or features (unless
                ``force``).
        """
        path = info["path"]
        mismatches = []
        if info["base_fingerprint"] != base_fingerprint:
            mismatches.append(
                f"base_fingerprint: file has {info['base_fingerprint'][:16]}..., "
                f"model has {base_fingerprint[:16]}... (trained on other base weights)"
            )
        if vocab_fingerprint is not None:
            if info["vocab_fingerprint"] is None:
                logger.warning("%s records no vocab_fingerprint; the vocabulary cannot be checked", path)
            elif info["vocab_fingerprint"] != vocab_fingerprint:
                mismatches.append(
                    f"vocab_fingerprint: file has {info['vocab_fingerprint']!r}, given {vocab_fingerprint!r}"
                )
        if feature_config is not None:
            if info["feature_config"] is None:
                logger.warning("%s records no feature_config; the features cannot be checked", path)
            else:
                differences = _dict_differences(
                    info["feature_config"], plain_values(feature_config, "feature_config", "an adapter file")
                )
                mismatches += [f"feature_config.{difference}" for difference in differences]
        if mismatches:
            message = f"adapter {path} does not match this model: " + "; ".join(mismatches)
            if not force:
                raise AdapterCompatibilityError(message + ". Pass force=True to load it anyway.", mismatches)
            logger.warning("%s (loading anyway: force=True)", message)
        return mismatches

    @staticmethod
    def load_adapter(
        model: nn.Module,
        adapter_path: PathLike,
        *,
        vocab_fingerprint: Optional[str] = None,
        feature_config: Optional[Mapping[str, Any]] = None,
        force: bool = False,
    ) -> Dict[str, Any]:
        """Load an adapter file into ``model``, attaching a new adapter when it has none of that type and size.

        An attached adapter of the same type and sizes gets the weights in place (so an optimizer holding its
        parameters stays valid); otherwise the rebuilt adapter replaces it. The model's train/eval mode is left
        as it is. The file's ``base_fingerprint`` is compared with ``model.base_fingerprint()``, and the vocabulary
        fingerprint and feature config with the given ones (when given and recorded).

        Args:
            model: a :class:`DeepSpeech2`, possibly wrapped in DataParallel / DDP.
            adapter_path: the ``.pt`` file.
            vocab_fingerprint: the current vocabulary's fingerprint, or None to skip that check.
            feature_config: the current feature settings (plain dict), or None to skip that check.
            force: load despite base / vocabulary / feature differences (logged as a warning instead).

        Returns:
            :meth:`get_adapter_info`'s dict plus ``missing_keys`` and ``unexpected_keys`` of the load (empty: the
            load is strict) and ``mismatches`` (the differences overridden by ``force``).

        Raises:
            AdapterCompatibilityError: the adapter was made for another base, vocabulary or features (unless
                ``force``), or its sizes do not fit the model (always).
            FileNotFoundError / ValueError: as :meth:`get_adapter_info`.
        """
        path = Path(adapter_path)
        base = _unwrap(model)
        adapter, info = AdapterManager.read_adapter(path)
        try:
            base.check_adapter_fits(adapter)
        except AdapterCompatibilityError as exc:
            message = f"{path}: {exc} (force=True cannot override sizes)"
            raise AdapterCompatibilityError(message, exc.mismatches) from exc
        mismatches = AdapterManager.check_compatibility(
            info,
            base_fingerprint=base.base_fingerprint(),
            vocab_fingerprint=vocab_fingerprint,
            feature_config=feature_config,
            force=force,
        )
        if base.adapter is not None and base.adapter.adapter_config() == adapter.adapter_config():
            result = base.load_adapter_state_dict(adapter.state_dict(), strict=True)
        else:
            base.attach_adapter(adapter, replace=True)
            result = base.adapter.load_state_dict(adapter.state_dict(), strict=True)
        info["missing_keys"] = list(result.missing_keys)
        info["unexpected_keys"] = list(result.unexpected_keys)
        info["mismatches"] = mismatches
        logger.info("loaded %s adapter %r from %s", info["adapter_type"], info["name"], path)
        if info["rejected"]:
            logger.warning("adapter %s was rejected at training: %s", path, info["rejected_reason"])
        return info

    @staticmethod
    def list_adapters(save_dir: PathLike) -> List[Dict[str, Any]]:
        """Info dicts (as :meth:`get_adapter_info`) of every ``<name>_adapter.pt`` in ``save_dir``, sorted by name.

        Files that cannot be read as adapters, and links resolving outside ``save_dir``, are skipped with a
        warning naming the file and the reason.

        Raises:
            FileNotFoundError: ``save_dir`` is not a directory.
        """
        save_dir = Path(save_dir)
        infos = []
        for name in AdapterManager.adapter_names(save_dir):
            path = AdapterManager.adapter_file(save_dir, name)
            try:
                _check_inside(path, save_dir)
                infos.append(AdapterManager.get_adapter_info(path))
            except (ValueError, FileNotFoundError) as exc:
                logger.warning("skipping %s: %s", path, exc)
        return infos

    @staticmethod
    def delete_adapter(save_dir: PathLike, adapter_name: str) -> Path:
        """Delete adapter ``adapter_name`` (exact name) from ``save_dir``, with its kept versions.

        An adapter with kept versions but no active file (a first training that was rejected, see :meth:`reinstate`)
        is deleted too.

        Returns:
            The deleted active file's path (it may not have existed, when only kept versions were deleted).

        Raises:
            FileNotFoundError: no such adapter, neither active nor kept (the message lists the adapters that exist).
            ValueError: invalid name, or the file is a link resolving outside ``save_dir``.
        """
        versions = AdapterManager.versions_dir(save_dir, adapter_name)
        if not versions.is_dir():
            path = AdapterManager.find_adapter(save_dir, adapter_name)
        else:
            path = AdapterManager.adapter_file(save_dir, adapter_name)
            if path.is_file():
                _check_inside(path, Path(save_dir))
            shutil.rmtree(versions)  # with whatever else is in it (a killed write's temporary file): links not followed
        if path.is_file():
            path.unlink()
        logger.info("deleted adapter %r: %s", adapter_name, path)
        return path

    # ------------------------------------------------------------------ versions

    @staticmethod
    def versions_dir(save_dir: PathLike, adapter_name: str) -> Path:
        """``{save_dir}/versions/{adapter_name}``: where the adapters a retraining replaced are kept.

        Raises:
            ValueError: invalid name, or ``versions/`` or ``versions/{adapter_name}`` is a link (keeping, listing,
                restoring and deleting versions through it would reach another adapter's versions or another folder).
        """
        folder = Path(save_dir) / VERSIONS_DIR_NAME / validate_adapter_name(adapter_name)
        if folder.exists() or folder.is_symlink():
            expected = Path(save_dir).resolve() / VERSIONS_DIR_NAME / adapter_name
            if folder.resolve() != expected:
                raise InputError(
                    f"{folder} is a link to {folder.resolve()}, not a folder of its own; refusing to follow it"
                )
        return folder

    @staticmethod
    def list_versions(save_dir: PathLike, adapter_name: str) -> List[Tuple[int, Path]]:
        """The kept (replaced) versions of an adapter as ``(version, path)``, oldest first; empty when none.

        The active adapter is always ``{save_dir}/{adapter_name}_adapter.pt``; a kept version is a complete adapter
        file (``get_adapter_info`` and ``load_adapter`` read it) named ``{version:06d}.pt``.
        """
        folder = AdapterManager.versions_dir(save_dir, adapter_name)
        if not folder.is_dir():
            return []
        versions = []
        for entry in folder.iterdir():
            number = _version_number(entry)
            if number is not None and entry.is_file():
                versions.append((number, entry))
        return sorted(versions)

    @staticmethod
    def keep_version(save_dir: PathLike, adapter_name: str) -> Optional[Path]:
        """Keep the active adapter as the next version before something replaces it (a retraining, a restore).

        Returns:
            The kept version's file, or ``None`` when the adapter has no active file yet.

        Raises:
            ValueError: invalid name, or the active file is a link resolving outside ``save_dir``.
        """
        active = AdapterManager.adapter_file(save_dir, adapter_name)
        if not active.is_file():
            return None
        _check_inside(active, Path(save_dir))
        target = AdapterManager._write_next_version(save_dir, adapter_name, active.read_bytes())
        logger.info("kept the active adapter %r as version %s", adapter_name, target)
        return target

    @staticmethod
    def _next_version(save_dir: PathLike, adapter_name: str) -> Path:
        """The version file after every ``NNNNNN.pt`` entry of the folder (whatever the entry is: a stray link or
        folder under a version's name is stepped over, not written to)."""
        folder = AdapterManager.versions_dir(save_dir, adapter_name)
        numbers = [_version_number(entry) for entry in folder.iterdir()] if folder.is_dir() else []
        taken = [number for number in numbers if number is not None]
        return folder / f"{max(taken, default=0) + 1:06d}.pt"

    @staticmethod
    def _write_next_version(save_dir: PathLike, adapter_name: str, content: bytes) -> Path:
        """Write ``content`` as a kept version under the next free number, only where no file has that name: a
        process keeping a version at the same moment takes one number, this one the next, and neither file replaces
        the other.

        Raises:
            OSError: no free number after many tries (another process keeps writing versions of this adapter).
        """
        for _ in range(_VERSION_TRIES):
            try:
                return atomic_write(
                    AdapterManager._next_version(save_dir, adapter_name),
                    lambda handle: handle.write(content),
                    replace=False,
                )
            except FileExistsError:
                continue
        raise OSError(f"no free version number for adapter {adapter_name!r} in {save_dir} after {_VERSION_TRIES} tries")

    @staticmethod
    def active_digest(save_dir: PathLike, adapter_name: str) -> Optional[str]:
        """The SHA-256 of the active adapter file's bytes, or ``None`` when there is none: what :meth:`reinstate` puts
        back after a run that replaced the file and then failed."""
        active = AdapterManager.adapter_file(save_dir, adapter_name)
        return hashlib.sha256(active.read_bytes()).hexdigest() if active.is_file() else None

    @staticmethod
    def reinstate(save_dir: PathLike, adapter_name: str, digest: Optional[str]) -> bool:
        """Make the active adapter the one :meth:`active_digest` gave ``digest`` for, before a run that has since
        replaced it and failed. The run's own file is kept as a version (for inspection); ``digest`` ``None`` (no
        adapter before) leaves no active file. The bytes put back are those that were active, whatever they hold (a
        damaged file stays the damaged file it was).

        Returns:
            Whether the active adapter changed; ``False`` also when no kept version has those bytes any more (logged).

        Raises:
            ValueError: invalid name, or a link resolving outside ``save_dir``.
            OSError: the folder cannot be read or written.
        """
        if AdapterManager.active_digest(save_dir, adapter_name) == digest:
            return False
        if digest is None:
            AdapterManager.keep_version(save_dir, adapter_name)
            AdapterManager.adapter_file(save_dir, adapter_name).unlink()
            logger.info("adapter %r: the failed run's file is kept as a version; no adapter is active", adapter_name)
            return True
        kept = (path.read_bytes() for _, path in reversed(AdapterManager.list_versions(save_dir, adapter_name)))
        data = next((content for content in kept if hashlib.sha256(content).hexdigest() == digest), None)
        if data is None:
            logger.warning("adapter %r: no kept version is the adapter active before the failed run", adapter_name)
            return False
        AdapterManager._replace_active(save_dir, adapter_name, data)
        logger.info("adapter %r: the adapter active before the failed run is active again", adapter_name)
        return True

    @staticmethod
    def restore_version(save_dir: PathLike, adapter_name: str, version: int) -> Path:
        """Make kept version ``version`` the active adapter again; the active one is kept as a new version first.

        Returns:
            The active file's path.

        Raises:
            FileNotFoundError: no such version (the message lists the kept ones).
            ValueError: invalid name, or the version file is not a valid adapter file.
        """
        kept = dict(AdapterManager.list_versions(save_dir, adapter_name))
        if version not in kept:
            raise FileNotFoundError(
                f"adapter {adapter_name!r} in {save_dir} has no version {version}; kept: {sorted(kept)}"
            )
        AdapterManager.get_adapter_info(kept[version])  # refuse a damaged version before the active file changes
        active = AdapterManager._replace_active(save_dir, adapter_name, kept[version].read_bytes())
        logger.info("adapter %r: version %d is active again", adapter_name, version)
        return active

    @staticmethod
    def _replace_active(save_dir: PathLike, adapter_name: str, data: bytes) -> Path:
        """Keep the active adapter as the next version, then make ``data`` the active file (atomically)."""
        AdapterManager.keep_version(save_dir, adapter_name)
        return atomic_write(AdapterManager.adapter_file(save_dir, adapter_name), lambda handle: handle.write(data))
