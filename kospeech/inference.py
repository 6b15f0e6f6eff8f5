"""Inference: a base DeepSpeech2 checkpoint plus per-user adapters, serving mixed-user batches.

:class:`Recognizer` loads a base checkpoint once (weights, vocabulary and the feature settings it was trained
with) and transcribes audio for any number of users::

    recognizer = Recognizer.from_checkpoint("base.pt", adapter_dir="adapters")
    recognizer.transcribe("hello.wav")                            # base model
    recognizer.transcribe("hello.wav", user="user01")             # user01's adapter
    recognizer.transcribe(["a.wav", "b.wav", "c.wav"], user=["user01", None, "user02"])

A batch may mix users: the frozen trunk runs once for the whole batch and each row then goes through its own
user's adapter (:meth:`DeepSpeech2.forward_mixed`, rows grouped per adapter); a row without a user gets exactly the
base model's output. Adapters are loaded on first use through :meth:`AdapterManager.load_adapter` (which checks
them against the base weights, the vocabulary and the feature settings) and kept in a bounded LRU
:class:`AdapterCache` that notices when a file changes on disk.

Audio handling (documented behaviour):

- Inputs: a path (any format soundfile reads; ``.pcm`` is KsponSpeech raw 16 kHz), a numpy array or torch tensor
  with its sample rate (``sample_rate=`` or a ``(waveform, sample_rate)`` pair), or a list of these. Waveforms are
  float in [-1, 1] or int16; 2-D waveforms are multi-channel, the shorter axis being the channels (at most 16),
  and are averaged to mono. Everything is resampled to the checkpoint's feature sample rate.
- Long audio is cut into segments of at most ``chunk_seconds`` (30 s) at the quietest 10 ms frame of each
  segment's last ``split_search_seconds`` (so cuts fall into pauses where there are pauses); files longer than
  one segment are streamed from disk, so memory stays bounded for hour-long files. Segment texts are joined with
  a space, timestamps are relative to the start of the input.
- Errors are raised before any model computation and name the input: a missing file (``FileNotFoundError``), an
  unreadable, corrupt or truncated file, an input with no samples or with NaN/Inf samples (:class:`AudioError`),
  an unsupported waveform type, shape or sample rate (``ValueError``). A corrupt block found while streaming a
  long file raises :class:`AudioError` when it is reached.
- Audio shorter than one feature window (20 ms by default) gives an empty transcript (``num_segments == 0``,
  ``confidence == 0.0``) with a logged warning; silence gives whatever the model outputs for it (normally an
  empty or near-empty transcript).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from kospeech.checkpoint import load_checkpoint
from kospeech.data.audio import AudioError, audio_info, iter_audio_chunks, load_audio, resample
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.decode import BeamSearchCTCDecoder, CTCHypothesis, GreedyCTCDecoder
from kospeech.metrics import ErrorRateMeter
from kospeech.models import AdapterManager, DeepSpeech2, validate_adapter_name
from kospeech.models.adapter import AdapterModule
from kospeech.vocabs import Vocabulary

__all__ = [
    "AUDIO_EXTENSIONS",
    "AdapterCache",
    "CacheStats",
    "Recognizer",
    "TokenTimestamp",
    "Transcription",
    "UnknownUserError",
    "collect_audio_files",
    "evaluate_users",
    "read_user_map",
    "transcribe_files",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
AudioInput = Union[PathLike, np.ndarray, Tensor, Tuple[Union[np.ndarray, Tensor], int]]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".pcm")
"""File extensions :func:`collect_audio_files` picks up from a directory."""

MAX_CHANNELS = 16
_SPLIT_FRAME_SECONDS = 0.01  # granularity of the quietest-point search when cutting long audio
_STREAM_BLOCK_SECONDS = 5.0  # block size when streaming a long file from disk


class UnknownUserError(LookupError):
    """A user has no adapter in the adapter directory (and falling back to the base model is not enabled).

    Attributes:
        user: the requested name.
        available: the adapter names that exist.
    """

    def __init__(self, user: str, available: Sequence[str], reason: str) -> None:
        super().__init__(
            f"unknown user {user!r}: {reason}; available adapters: {list(available)} "
            "(fallback_to_base=True, or --fallback-to-base on the command line, uses the base model for such users)"
        )
        self.user = user
        self.available = list(available)


# ---------------------------------------------------------------------------------------------------- records


@dataclass
class TokenTimestamp:
    """Where one output token starts.

    Attributes:
        token_id: vocabulary id.
        token: the token's text (a syllable, a jamo or a space).
        start: seconds from the start of the input to the first output frame of the token. One output frame
            covers ``2 * frame_shift_ms`` of audio (the conv stride is 2), so starts are accurate to about that.
    """

    token_id: int
    token: str
    start: float


@dataclass
class Transcription:
    """The recognizer's result for one input.

    Attributes:
        text: the transcript (segment texts of long inputs joined with a space).
        tokens: label ids of the transcript, in order (special ids removed).
        score: natural-log probability of the decoded labelling, summed over segments: of the best path for
            greedy decoding, of the prefix for beam search.
        confidence: ``exp(score / num_frames)``, the per-frame geometric mean probability, in [0, 1];
            0.0 when no frame was decoded.
        num_frames: output frames decoded (T' summed over segments).
        duration: seconds of input audio.
        num_segments: segments the input was cut into (0 when it was shorter than one feature window).
        user: the user requested for this input (``None``: base model).
        adapter: the adapter actually applied; ``None`` for the base model, including a fallback for a user
            without an adapter.
        timestamps: per-token start times when requested, else ``None``.
    """

    text: str
    tokens: List[int]
    score: float
    confidence: float
    num_frames: int
    duration: float
    num_segments: int
    user: Optional[str] = None
    adapter: Optional[str] = None
    timestamps: Optional[List[TokenTimestamp]] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain values for JSON (``timestamps`` omitted when not requested)."""
        values = asdict(self)
        if self.timestamps is None:
            values.pop("timestamps")
        return values


# ---------------------------------------------------------------------------------------------------- adapter cache


@dataclass
class CacheStats:
    """Counters of an :class:`AdapterCache`.

    Attributes:
        hits: lookups served from memory.
        misses: lookups that loaded the file (first use, after an eviction, or after the file changed).
        evictions: adapters dropped because the cache was full (least recently used first).
        reloads: misses caused by a cached adapter's file having changed on disk (counted in ``misses`` too).
        size: adapters held now.
        capacity: the most adapters held at once.
    """

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    reloads: int = 0
    size: int = 0
    capacity: int = 0


@dataclass
class _CacheEntry:
    adapter: AdapterModule
    stamp: Tuple[int, int, int, int]


def _file_stamp(path: Path) -> Tuple[int, int, int, int]:
    """(device, inode, mtime_ns, size): changes when the file is rewritten, also by an atomic replace."""
    status = path.stat()
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


class AdapterCache:
    """Bounded LRU cache of loaded adapters, keyed by user (adapter) name; thread-safe.

    Each lookup finds ``{adapter_dir}/{name}_adapter.pt`` by exact name and compares the file's identity,
    modification time and size with those seen when it was loaded, so a file replaced on disk is loaded again.

    Args:
        adapter_dir: directory of ``<name>_adapter.pt`` files.
        loader: turns an adapter file into a ready-to-use module (for :class:`Recognizer`: loaded and checked with
            :meth:`AdapterManager.load_adapter`, eval mode, on the model's device).
        capacity: the most adapters held at once (>= 1).
    """

    def __init__(self, adapter_dir: PathLike, loader: Callable[[Path], AdapterModule], capacity: int = 32) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"cache capacity must be an int >= 1, got {capacity!r}")
        self.adapter_dir = Path(adapter_dir)
        if not self.adapter_dir.is_dir():
            raise FileNotFoundError(f"adapter directory not found: {self.adapter_dir}")
        self.capacity = capacity
        self._loader = loader
        self._entries: "OrderedDict[str, _CacheEntry]" = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._reloads = 0

    def available(self) -> List[str]:
        """Sorted names of the adapter files in the directory (files are not opened)."""
        return AdapterManager.adapter_names(self.adapter_dir)

    def get(self, name: str) -> AdapterModule:
        """The adapter of ``name``, loading it on a miss or when its file changed.

        Raises:
            ValueError: invalid name.
            FileNotFoundError: no ``<name>_adapter.pt`` in the directory (the message lists what exists).
            AdapterCompatibilityError / ValueError: from the loader (wrong base, vocabulary, features, bad file).
        """
        path = AdapterManager.find_adapter(self.adapter_dir, name)
        stamp = _file_stamp(path)  # taken before reading, so a concurrent replace is picked up next time
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(name)
                self._hits += 1
                return entry.adapter
            self._misses += 1
            if entry is not None:
                self._reloads += 1
                logger.info("adapter file of %r changed on disk; reloading %s", name, path)
                del self._entries[name]
            adapter = self._loader(path)
            self._entries[name] = _CacheEntry(adapter, stamp)
            while len(self._entries) > self.capacity:
                evicted, _ = self._entries.popitem(last=False)
                self._evictions += 1
                logger.debug("adapter cache full (%d): evicted %r", self.capacity, evicted)
            return adapter

    def names(self) -> List[str]:
        """Cached names, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Drop every cached adapter (the counters are kept)."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, self._reloads, len(self._entries), self.capacity
            )


# ---------------------------------------------------------------------------------------------------- audio inputs


@dataclass
class _Item:
    """One input, validated: either a mono waveform in memory or a long file to stream."""

    description: str
    sample_rate: int
    num_samples: int
    waveform: Optional[np.ndarray] = None
    path: Optional[Path] = None


def _describe(audio: Any, index: Optional[int]) -> str:
    if isinstance(audio, (str, os.PathLike)):
        return str(audio)
    where = "input" if index is None else f"input {index}"
    shape = tuple(getattr(audio, "shape", ()))
    return f"{where} ({type(audio).__module__.split('.')[0]}.{type(audio).__name__} of shape {shape})"


def _as_mono(waveform: Union[np.ndarray, Tensor], description: str) -> np.ndarray:
    """A float32 (N,) waveform from a 1-D or 2-D float/int16 array (channels averaged)."""
    if isinstance(waveform, Tensor):
        waveform = waveform.detach().cpu()
        if waveform.dtype == torch.bfloat16 or waveform.dtype == torch.float16:
            waveform = waveform.float()
        waveform = waveform.numpy()
    data = np.asarray(waveform)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    elif not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"{description}: waveform dtype must be floating point or int16, got {data.dtype}")
    if data.ndim == 2:
        channel_axis = 0 if data.shape[0] <= data.shape[1] else 1
        if data.shape[channel_axis] > MAX_CHANNELS:
            raise ValueError(
                f"{description}: a 2-D waveform must be (channels, samples) or (samples, channels) with at most "
                f"{MAX_CHANNELS} channels, got shape {data.shape}"
            )
        data = data.mean(axis=channel_axis, dtype=np.float64)
    elif data.ndim != 1:
        raise ValueError(
            f"{description}: waveform must be 1-D (samples) or 2-D (with channels), got shape {data.shape}"
        )
    if data.size == 0:
        raise AudioError(f"{description}: the waveform has no samples")
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise AudioError(f"{description}: the waveform holds {bad} NaN/Inf samples")
    return np.ascontiguousarray(data, dtype=np.float32)


def _check_rate(sample_rate: Any, description: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"{description}: sample_rate must be a positive int (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _quietest_cut(waveform: np.ndarray, start: int, stop: int, frame: int) -> int:
    """Sample index in ``[start, stop)`` at the centre of the lowest-energy ``frame``-sample frame."""
    count = (stop - start) // frame
    if count < 1:
        return stop
    frames = waveform[start : start + count * frame].reshape(count, frame).astype(np.float64)
    return start + int(np.argmin(np.square(frames).sum(axis=1))) * frame + frame // 2


def _segments(
    blocks: Iterable[np.ndarray], sample_rate: int, max_seconds: float, search_seconds: float
) -> Iterator[Tuple[int, np.ndarray]]:
    """Cut a stream of mono blocks into segments of at most ``max_seconds``, each cut at a quiet point.

    Yields:
        ``(offset, segment)``: the segment's first sample index in the whole stream, and its (n,) samples.
    """
    max_samples = max(1, int(max_seconds * sample_rate))
    search = min(max_samples - 1, int(search_seconds * sample_rate))
    frame = max(1, int(_SPLIT_FRAME_SECONDS * sample_rate))
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        while buffer.size > max_samples:
            cut = _quietest_cut(buffer, max_samples - search, max_samples, frame)
            yield offset, buffer[:cut]
            offset += cut
            buffer = buffer[cut:]
    if buffer.size:
        yield offset, buffer


# ---------------------------------------------------------------------------------------------------- recognizer


@dataclass
class _Segment:
    item: int
    offset_seconds: float
    features: Tensor  # (T, D)


@dataclass
class _Accumulator:
    texts: List[str] = field(default_factory=list)
    tokens: List[int] = field(default_factory=list)
    timestamps: List[TokenTimestamp] = field(default_factory=list)
    score: float = 0.0
    num_frames: int = 0
    num_segments: int = 0


def _seconds(value: float) -> float:
    """Round a time to 0.1 ms (timestamps are far coarser; this only hides float noise in JSON)."""
    return round(value, 4)


def _resolve_device(device: Union[str, torch.device]) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    return resolved


class Recognizer:
    """Speech -> text with a frozen base model and per-user adapters (see the module docstring).

    Args:
        model: the base :class:`DeepSpeech2`; an attached adapter is detached (per-user adapters come from
            ``adapter_dir``). The model is put in eval mode with gradients off and must stay so.
        vocab: the vocabulary the model was trained with.
        feature_config: the feature settings the model was trained with (read from the checkpoint).
        adapter_dir: directory of ``<user>_adapter.pt`` files, or ``None`` for the base model only.
        cache_size: the most adapters kept in memory (LRU).
        fallback_to_base: transcribe users without an adapter with the base model (logged) instead of raising
            :class:`UnknownUserError`.
        beam_size: 1 for greedy CTC decoding, more for prefix beam search.
        batch_size: segments run through the model at once.
        chunk_seconds: longest segment; longer audio is cut (see the module docstring).
        split_search_seconds: how far back from a segment's end the quietest cut point is searched.
    """

    def __init__(
        self,
        model: DeepSpeech2,
        vocab: Vocabulary,
        feature_config: FeatureConfig,
        *,
        adapter_dir: Optional[PathLike] = None,
        cache_size: int = 32,
        fallback_to_base: bool = False,
        beam_size: int = 1,
        batch_size: int = 16,
        chunk_seconds: float = 30.0,
        split_search_seconds: float = 3.0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not chunk_seconds > 0 or not 0 <= split_search_seconds < chunk_seconds:
            raise ValueError(
                f"need chunk_seconds > 0 and 0 <= split_search_seconds < chunk_seconds, got {chunk_seconds} "
                f"and {split_search_seconds}"
            )
        if len(vocab) != model.num_classes:
            raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model {model.num_classes} classes")
        self.feature_extractor = FeatureExtractor(feature_config)
        self.feature_config = self.feature_extractor.config
        if self.feature_config.feature_dim != model.input_dim:
            raise ValueError(
                f"the features have {self.feature_config.feature_dim} bins but the model expects {model.input_dim}"
            )
        if model.adapter is not None:
            logger.info("detaching the %s adapter stored with the base model", model.adapter_type)
            model.remove_adapter()
        self.model = model.eval().requires_grad_(False)
        self.vocab = vocab
        self.fallback_to_base = bool(fallback_to_base)
        self.batch_size = batch_size
        self.chunk_seconds = float(chunk_seconds)
        self.split_search_seconds = float(split_search_seconds)
        self.beam_size = beam_size
        self.decoder = GreedyCTCDecoder(vocab) if beam_size == 1 else BeamSearchCTCDecoder(vocab, beam_size=beam_size)
        self._vocab_fingerprint = vocab.fingerprint()
        self._feature_dict = self.feature_config.to_dict()
        self._special_ids = {vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.blank_id}
        # seconds per output frame: input frames are hop_length samples apart, the conv stride halves them
        probe = 1 << 16
        stride = probe // int(model.output_lengths(torch.tensor([probe]))[0])
        self.frame_seconds = stride * self.feature_config.hop_length / self.feature_config.sample_rate
        self.cache = None if adapter_dir is None else AdapterCache(adapter_dir, self._load_adapter, cache_size)

    @classmethod
    def from_checkpoint(
        cls,
        base_path: PathLike,
        adapter_dir: Optional[PathLike] = None,
        device: Union[str, torch.device] = "cpu",
        cache_size: int = 32,
        fallback_to_base: bool = False,
        beam_size: int = 1,
        **kwargs: Any,
    ) -> "Recognizer":
        """Load a base checkpoint (weights, vocabulary, feature settings) once.

        Args:
            base_path: a checkpoint written by :func:`kospeech.checkpoint.save_checkpoint`.
            adapter_dir: directory of ``<user>_adapter.pt`` files, or ``None``.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
            cache_size: the most adapters kept in memory.
            fallback_to_base: use the base model for users without an adapter instead of raising.
            beam_size: 1 for greedy decoding, more for beam search.
            **kwargs: ``batch_size``, ``chunk_seconds``, ``split_search_seconds`` (see the class).

        Raises:
            FileNotFoundError: no checkpoint file, or ``adapter_dir`` is not a directory.
            ValueError: not a valid checkpoint.
        """
        checkpoint = load_checkpoint(base_path)
        model = checkpoint.build_model(device=_resolve_device(device))
        logger.info("loaded base model %s (%d classes) on %s", base_path, model.num_classes, model.device)
        return cls(
            model,
            checkpoint.vocab,
            checkpoint.feature_config,
            adapter_dir=adapter_dir,
            cache_size=cache_size,
            fallback_to_base=fallback_to_base,
            beam_size=beam_size,
            **kwargs,
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.model.device

    # ------------------------------------------------------------------ users and adapters

    def _load_adapter(self, path: Path) -> AdapterModule:
        """Load and check one adapter file against this base (the cache's loader); eval mode, no gradients."""
        try:
            with torch.no_grad():
                AdapterManager.load_adapter(
                    self.model, path, vocab_fingerprint=self._vocab_fingerprint, feature_config=self._feature_dict
                )
        finally:
            adapter = self.model.remove_adapter()
        return adapter.eval().requires_grad_(False)

    def available_users(self) -> List[str]:
        """Names of the adapters in ``adapter_dir`` (empty without one)."""
        return [] if self.cache is None else self.cache.available()

    def cache_stats(self) -> CacheStats:
        """Counters of the adapter cache (all zero without ``adapter_dir``)."""
        return CacheStats() if self.cache is None else self.cache.stats()

    def resolve_users(self, users: Iterable[Optional[str]]) -> Dict[Optional[str], Optional[AdapterModule]]:
        """Check every user name and load its adapter (through the cache) before any audio is processed.

        Args:
            users: names, ``None`` meaning the base model.

        Returns:
            name -> adapter module, ``None`` for the base model (and for users falling back to it).

        Raises:
            ValueError: an invalid name (path separators, ``..``, too long, ...), even with fallback.
            UnknownUserError: a user without an adapter file, unless ``fallback_to_base``.
            AdapterCompatibilityError: an adapter made for another base model, vocabulary or features.
        """
        resolved: Dict[Optional[str], Optional[AdapterModule]] = {None: None}
        names = [user for user in dict.fromkeys(users) if user is not None]
        for name in names:
            validate_adapter_name(name)
        for name in names:
            resolved[name] = self._adapter_for(name)
        return resolved

    def _adapter_for(self, name: str) -> Optional[AdapterModule]:
        if self.cache is None:
            reason = "this recognizer has no adapter_dir"
            available: List[str] = []
        else:
            try:
                return self.cache.get(name)
            except FileNotFoundError:
                reason = f"no {name}_adapter.pt in {self.cache.adapter_dir}"
                available = self.cache.available()
        if not self.fallback_to_base:
            raise UnknownUserError(name, available, reason)
        logger.warning("user %r: %s; using the base model", name, reason)
        return None

    # ------------------------------------------------------------------ inputs

    def _prepare(self, audio: AudioInput, index: Optional[int], sample_rate: Optional[int]) -> _Item:
        """Validate one input; short files are read now, long files only have their header checked."""
        description = _describe(audio, index)
        if isinstance(audio, (str, os.PathLike)):
            path = Path(audio)
            info = audio_info(path)
            if info.num_frames == 0:
                raise AudioError(f"{path}: the audio file contains no samples")
            if info.duration > self.chunk_seconds:
                return _Item(str(path), info.sample_rate, info.num_frames, path=path)
            rate = self.feature_config.sample_rate
            waveform = load_audio(path, sample_rate=rate)
            return _Item(str(path), rate, waveform.shape[0], waveform=waveform)
        if isinstance(audio, tuple):
            if len(audio) != 2 or not isinstance(audio[0], (np.ndarray, Tensor)):
                raise ValueError(
                    f"{description}: a tuple input must be (waveform, sample_rate); pass several inputs as a list"
                )
            audio, sample_rate = audio
            description = _describe(audio, index)
        if not isinstance(audio, (np.ndarray, Tensor)):
            raise ValueError(
                f"{description}: expected a path, a numpy array, a torch tensor or a (waveform, sample_rate) pair"
            )
        if sample_rate is None:
            raise ValueError(
                f"{description}: a waveform needs its sample rate: pass sample_rate=... or (waveform, rate)"
            )
        rate = _check_rate(sample_rate, description)
        waveform = _as_mono(audio, description)
        return _Item(description, rate, waveform.shape[0], waveform=waveform)

    def _item_segments(self, item: _Item) -> Iterator[Tuple[int, np.ndarray]]:
        if item.waveform is not None:
            blocks: Iterable[np.ndarray] = [item.waveform]
        else:
            blocks = iter_audio_chunks(item.path, chunk_seconds=_STREAM_BLOCK_SECONDS)
        return _segments(blocks, item.sample_rate, self.chunk_seconds, self.split_search_seconds)

    # ------------------------------------------------------------------ transcription

    def transcribe(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        user: Union[None, str, Sequence[Optional[str]]] = None,
        sample_rate: Optional[int] = None,
        return_timestamps: bool = False,
    ) -> Union[Transcription, List[Transcription]]:
        """Transcribe one input or a list of inputs, each with its own user's adapter.

        Args:
            audio: a path, a waveform (numpy array / torch tensor, see the module docstring), a
                ``(waveform, sample_rate)`` pair, or a list of these.
            user: ``None`` (base model for all), one name for all inputs, or a list with one name (or ``None``)
                per input.
            sample_rate: sample rate of waveform inputs given without their own rate (ignored for files, which
                carry theirs).
            return_timestamps: fill :attr:`Transcription.timestamps`.

        Returns:
            A :class:`Transcription` for a single input, a list of them (in input order) for a list.

        Raises:
            UnknownUserError, ValueError, AdapterCompatibilityError: see :meth:`resolve_users`.
            FileNotFoundError, AudioError, ValueError: unusable audio, naming the input (see the module docstring).
        """
        single = not isinstance(audio, list)
        inputs: List[AudioInput] = [audio] if single else list(audio)
        if isinstance(user, (list, tuple)):
            if single:
                raise ValueError("user is a list but audio is a single input; pass a list of inputs or one user")
            if len(user) != len(inputs):
                raise ValueError(f"got {len(user)} users for {len(inputs)} inputs; give one user (or None) per input")
            users = list(user)
        elif user is None or isinstance(user, str):
            users = [user] * len(inputs)
        else:
            raise ValueError(f"user must be None, a name or a list of names, got {type(user).__name__}")
        adapters = self.resolve_users(users)
        items = [self._prepare(item, None if single else index, sample_rate) for index, item in enumerate(inputs)]
        names = [None if adapters[name] is None else name for name in users]
        results = self._run(items, names, adapters, return_timestamps)
        for result, requested in zip(results, users):
            result.user = requested
        return results[0] if single else results

    def _run(
        self,
        items: List[_Item],
        names: List[Optional[str]],
        adapters: Dict[Optional[str], Optional[AdapterModule]],
        return_timestamps: bool,
    ) -> List[Transcription]:
        accumulators = [_Accumulator() for _ in items]
        target_rate = self.feature_config.sample_rate
        min_samples = self.feature_config.win_length
        pending: List[_Segment] = []
        with torch.inference_mode():
            for index, item in enumerate(items):
                for offset, samples in self._item_segments(item):
                    samples = resample(samples, item.sample_rate, target_rate)
                    if samples.shape[0] < min_samples:
                        continue  # a tail shorter than one feature window carries nothing to decode
                    features = self.feature_extractor(samples)
                    pending.append(_Segment(index, offset / item.sample_rate, features))
                    if len(pending) == self.batch_size:
                        self._decode_batch(pending, names, adapters, accumulators)
                        pending = []
            if pending:
                self._decode_batch(pending, names, adapters, accumulators)
        results = []
        for item, name, accumulator in zip(items, names, accumulators):
            if accumulator.num_segments == 0:
                logger.warning(
                    "%s: %.4f s of audio is shorter than one feature window (%d samples at %d Hz); empty transcript",
                    item.description,
                    item.num_samples / item.sample_rate,
                    min_samples,
                    target_rate,
                )
            frames = accumulator.num_frames
            results.append(
                Transcription(
                    text=" ".join(accumulator.texts),
                    tokens=accumulator.tokens,
                    score=accumulator.score,
                    confidence=math.exp(accumulator.score / frames) if frames else 0.0,
                    num_frames=frames,
                    duration=item.num_samples / item.sample_rate,
                    num_segments=accumulator.num_segments,
                    adapter=name,
                    timestamps=accumulator.timestamps if return_timestamps else None,
                )
            )
        return results

    def _decode_batch(
        self,
        segments: List[_Segment],
        names: List[Optional[str]],
        adapters: Dict[Optional[str], Optional[AdapterModule]],
        accumulators: List[_Accumulator],
    ) -> None:
        """Pad the segments, run one mixed-adapter forward pass, decode, and add each row to its input's result."""
        lengths = torch.tensor([segment.features.shape[0] for segment in segments], dtype=torch.int64)
        inputs = torch.zeros(len(segments), int(lengths.max()), self.model.input_dim)  # (B, T, D)
        for row, segment in enumerate(segments):
            inputs[row, : segment.features.shape[0]] = segment.features
        rows_by_user: Dict[str, List[int]] = {}
        for row, segment in enumerate(segments):
            name = names[segment.item]
            if name is not None:
                rows_by_user.setdefault(name, []).append(row)
        groups = [(rows, adapters[name]) for name, rows in rows_by_user.items()]
        log_probs, output_lengths = self.model.forward_mixed(inputs.to(self.device), lengths, groups)
        hypotheses = self.decoder(log_probs.cpu(), output_lengths.cpu())
        for segment, hypothesis, frames in zip(segments, hypotheses, output_lengths.tolist()):
            self._add(accumulators[segment.item], segment, hypothesis, frames)

    def _add(self, accumulator: _Accumulator, segment: _Segment, hypothesis: CTCHypothesis, frames: int) -> None:
        kept = [
            (token, step)
            for token, step in zip(hypothesis.tokens, hypothesis.timesteps)
            if token not in self._special_ids
        ]
        text = hypothesis.text.strip()
        if text:
            accumulator.texts.append(text)
        accumulator.tokens.extend(token for token, _ in kept)
        start = segment.offset_seconds
        accumulator.timestamps.extend(
            TokenTimestamp(token, self.vocab.tokens[token], _seconds(start + step * self.frame_seconds))
            for token, step in kept
        )
        accumulator.score += float(hypothesis.score)
        accumulator.num_frames += frames
        accumulator.num_segments += 1


# ---------------------------------------------------------------------------------------------------- files, maps, eval


def collect_audio_files(inputs: Iterable[PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> List[Path]:
    """Files given directly, plus every audio file under given directories (recursive, sorted).

    Args:
        inputs: files and directories.
        extensions: lower-case suffixes picked up from directories (files given directly are always kept).

    Raises:
        FileNotFoundError: an input does not exist.
    """
    files: List[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                logger.warning("no audio files (%s) under %s", ", ".join(extensions), path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return files


def read_user_map(path: PathLike) -> Dict[Path, str]:
    """Read a user map: one ``AUDIO_PATH<TAB>USER`` per line (blank lines and ``#`` comments skipped).

    Relative audio paths are relative to the map file's directory; keys are resolved absolute paths.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line, an invalid user name, or a path listed twice (naming ``file:line``).
    """
    path = Path(path)
    mapping: Dict[Path, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            columns = line.split("\t")
            if len(columns) != 2 or not columns[0].strip() or not columns[1].strip():
                raise ValueError(f"{path}:{number}: expected AUDIO_PATH<TAB>USER, got {line!r}")
            user = columns[1].strip()
            try:
                validate_adapter_name(user)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
            audio = (path.parent / columns[0].strip()).resolve()
            if audio in mapping:
                raise ValueError(f"{path}:{number}: {audio} is listed twice")
            mapping[audio] = user
    return mapping


def transcribe_files(
    recognizer: Recognizer,
    files: Sequence[Path],
    users: Sequence[Optional[str]],
    *,
    files_per_call: Optional[int] = None,
    return_timestamps: bool = False,
) -> Iterator[Tuple[Path, Optional[str], Union[Transcription, Exception]]]:
    """Transcribe files in mixed-user batches; an unusable file yields its error instead of stopping the run.

    Users are checked (and adapters loaded) up front, so an unknown user raises before any audio is read. Files are
    sent ``files_per_call`` at a time (default: the recognizer's batch size); when a call fails on a bad file,
    its files are retried one by one so that only the bad ones report an error.

    Args:
        recognizer: the recognizer.
        files: audio files.
        users: one user (or ``None``) per file.
        files_per_call: files per :meth:`Recognizer.transcribe` call.
        return_timestamps: request token timestamps.

    Yields:
        ``(file, user, Transcription or the AudioError / FileNotFoundError / ValueError it raised)`` in file order.
    """
    if len(users) != len(files):
        raise ValueError(f"got {len(users)} users for {len(files)} files")
    recognizer.resolve_users(users)
    step = files_per_call or recognizer.batch_size
    for start in range(0, len(files), step):
        chunk, chunk_users = list(files[start : start + step]), list(users[start : start + step])
        try:
            results: List[Union[Transcription, Exception]] = list(
                recognizer.transcribe(chunk, user=chunk_users, return_timestamps=return_timestamps)
            )
        except (FileNotFoundError, ValueError) as exc:
            if len(chunk) == 1:
                results = [exc]
            else:
                results = []
                for path, user in zip(chunk, chunk_users):
                    try:
                        results.append(recognizer.transcribe(path, user=user, return_timestamps=return_timestamps))
                    except (FileNotFoundError, ValueError) as error:
                        results.append(error)
        yield from zip(chunk, chunk_users, results)


def evaluate_users(
    recognizer: Recognizer,
    audio_paths: Sequence[PathLike],
    references: Sequence[str],
    users: Sequence[Optional[str]],
) -> Dict[str, Any]:
    """CER/WER of the base model and of each utterance's own user adapter, per user and overall.

    Every utterance is decoded twice: with the base model, and with its user's adapter in mixed-user batches
    (an utterance without a user, or whose user falls back to the base model, scores the base output in both).

    Args:
        recognizer: the recognizer (its ``adapter_dir`` holds ``<user>_adapter.pt`` files).
        audio_paths: utterance audio files.
        references: their transcripts.
        users: one user (or ``None``) per utterance.

    Returns:
        ``{"overall": {"base": ..., "adapter": ...}, "per_user": {user: {"base": ..., "adapter": ...,
        "adapter_applied": bool}}}`` where each figure is :meth:`ErrorRateMeter.to_dict`; utterances without a user
        are listed under ``"<none>"``.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(audio_paths) == len(references) == len(users):
        raise ValueError(
            f"got {len(audio_paths)} audio paths, {len(references)} references and {len(users)} users; "
            "they must pair up"
        )
    files = [Path(path) for path in audio_paths]
    base_hypotheses, adapted_hypotheses, applied = [], [], {}
    for base_run, adapted_run in zip(
        transcribe_files(recognizer, files, [None] * len(files)), transcribe_files(recognizer, files, users)
    ):
        for path, _, result in (base_run, adapted_run):
            if isinstance(result, Exception):
                raise result
        base_hypotheses.append(base_run[2].text)
        adapted_hypotheses.append(adapted_run[2].text)
        applied[adapted_run[1]] = adapted_run[2].adapter is not None
    overall = {"base": ErrorRateMeter("base"), "adapter": ErrorRateMeter("adapter")}
    per_user: Dict[str, Dict[str, ErrorRateMeter]] = {}
    for reference, base_text, adapted_text, user in zip(references, base_hypotheses, adapted_hypotheses, users):
        key = "<none>" if user is None else user
        meters = per_user.setdefault(
            key, {"base": ErrorRateMeter(f"{key}/base"), "adapter": ErrorRateMeter(f"{key}/adapter")}
        )
        for meter, text in ((overall["base"], base_text), (overall["adapter"], adapted_text)):
            meter.update([reference], [text])
        meters["base"].update([reference], [base_text])
        meters["adapter"].update([reference], [adapted_text])
    return {
        "overall": {name: meter.to_dict() for name, meter in overall.items()},
        "per_user": {
            key: {
                "base": meters["base"].to_dict(),
                "adapter": meters["adapter"].to_dict(),
                "adapter_applied": applied[None if key == "<none>" else key],
            }
            for key, meters in sorted(per_user.items())
        },
    }
