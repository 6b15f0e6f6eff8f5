"""Acoustic features: one configuration and one extractor shared by training, evaluation and inference.

A checkpoint stores ``FeatureConfig.to_dict()``; inference rebuilds the same :class:`FeatureExtractor` from it with
:meth:`FeatureConfig.from_dict`, so features never drift between training and inference.

All four feature types cut the waveform into the same frames (Kaldi's ``snip_edges`` convention): an utterance of N
samples gives ``T = 1 + (N - win_length) // hop_length`` frames whatever the type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from kospeech.data.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, load_audio
from kospeech.errors import AudioError, ConfigError

__all__ = ["FEATURE_TYPES", "NORMALIZE_MODES", "FeatureConfig", "FeatureExtractor", "SpecAugment"]

FEATURE_TYPES = ("fbank", "mel", "mfcc", "spectrogram")
NORMALIZE_MODES = ("utterance", "speech", "none")

_INT16_SCALE = 32768.0  # features are computed on 16-bit sample units, as Kaldi does
_LOG_FLOOR = 1e-6
_STD_FLOOR = 1e-5
_SPEECH_RANGE = 8.0  # "speech" normalization: frames within 8 nats of log power (about 35 dB) of the loudest
_SPEECH_REFERENCE_PERCENTILE = 0.98  # the "loudest" frame level, robust to a click
_SPEECH_FLOOR_PERCENTILE = 0.05  # per bin: frames partly in digital silence must not drag the floor down


def _mel(hertz: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
    """The mel scale of Kaldi's filterbank and of HTK (torchaudio's default)."""
    return 1127.0 * np.log1p(np.asarray(hertz, dtype=np.float64) / 700.0)


@dataclass
class FeatureConfig:
    """Feature settings (Hydra group ``audio``); recorded in every checkpoint and adapter file."""

    feature_type: str = field(
        default="fbank",
        metadata={"help": "fbank (Kaldi log mel filterbank), mel (log mel spectrogram), mfcc, or spectrogram"},
    )
    sample_rate: int = field(default=16000, metadata={"help": "audio is resampled to this rate (Hz) before features"})
    num_mels: int = field(default=80, metadata={"help": "mel bins for fbank / mel, and the mel bank under mfcc"})
    num_mfcc: int = field(default=40, metadata={"help": "cepstral coefficients kept for mfcc (<= num_mels)"})
    frame_length_ms: float = field(default=20.0, metadata={"help": "analysis window length in milliseconds"})
    frame_shift_ms: float = field(default=10.0, metadata={"help": "hop between frames in milliseconds"})
    f_min: float = field(default=20.0, metadata={"help": "lowest mel filter edge in Hz"})
    f_max: float = field(default=0.0, metadata={"help": "highest mel filter edge in Hz; 0 means sample_rate / 2"})
    preemphasis: float = field(default=0.97, metadata={"help": "pre-emphasis coefficient in [0, 1); 0 disables"})
    dither: float = field(
        default=0.0,
        metadata={"help": "std of Gaussian noise added in 16-bit sample units; 0 keeps features deterministic"},
    )
    normalize: str = field(
        default="utterance",
        metadata={
            "help": "utterance: zero mean, unit variance per feature bin over each utterance; speech: the same "
            "statistics over the utterance's speech frames only, every bin floored at a low percentile of those "
            "frames (silence and padding cannot shift them); none: raw"
        },
    )

    @property
    def win_length(self) -> int:
        """Analysis window length in samples."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    @property
    def n_fft(self) -> int:
        """FFT size: the window length rounded up to a power of two (Kaldi's convention)."""
        return 1 << max(0, self.win_length - 1).bit_length()

    @property
    def feature_dim(self) -> int:
        """D, the number of feature bins per frame."""
        if self.feature_type == "mfcc":
            return self.num_mfcc
        if self.feature_type == "spectrogram":
            return self.n_fft // 2 + 1
        return self.num_mels

    def validate(self) -> FeatureConfig:
        """Check every field.

        Returns:
            ``self``, for chaining.

        Raises:
            ConfigError: (a ValueError) a field has a value outside its allowed range, naming the field and what
                is allowed.
        """
        if self.feature_type not in FEATURE_TYPES:
            raise ConfigError(f"feature_type must be one of {FEATURE_TYPES}, got {self.feature_type!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.normalize == "speech" and self.feature_type == "mfcc":
            raise ConfigError("normalize=speech needs log-spectral features (fbank, mel, spectrogram), not mfcc")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ConfigError(
                f"sample_rate must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz (audio is read at those rates), "
                f"got {self.sample_rate}"
            )
        least_mels = 3 if self.feature_type in ("fbank", "mfcc") else 1  # Kaldi's filterbank needs three
        if self.num_mels < least_mels:
            raise ConfigError(f"num_mels must be >= {least_mels} for {self.feature_type}, got {self.num_mels}")
        if self.feature_type == "mfcc" and not 1 <= self.num_mfcc <= self.num_mels:
            raise ConfigError(f"num_mfcc must be in [1, num_mels={self.num_mels}], got {self.num_mfcc}")
        if self.frame_length_ms <= 0 or self.frame_shift_ms <= 0:
            raise ConfigError(
                f"frame_length_ms and frame_shift_ms must be > 0, got {self.frame_length_ms} and {self.frame_shift_ms}"
            )
        if self.win_length < 2 or self.hop_length < 1:
            raise ConfigError(
                f"frame_length_ms={self.frame_length_ms} / frame_shift_ms={self.frame_shift_ms} at "
                f"{self.sample_rate} Hz give a window of {self.win_length} and a hop of {self.hop_length} samples; "
                "need a window of at least 2 samples and a hop of at least 1"
            )
        nyquist = self.sample_rate / 2.0
        high = self.f_max if self.f_max > 0 else nyquist
        if self.f_min < 0 or self.f_max < 0 or high > nyquist or self.f_min >= high:
            raise ConfigError(
                f"need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist} Hz (f_max 0 = sample_rate / 2), "
                f"got f_min={self.f_min}, f_max={self.f_max}"
            )
        if not 0.0 <= self.preemphasis < 1.0:
            raise ConfigError(f"preemphasis must be in [0, 1), got {self.preemphasis}")
        if self.dither < 0:
            raise ConfigError(f"dither must be >= 0, got {self.dither}")
        return self

    def empty_mel_filters(self) -> int:
        """How many mel filters hold no FFT bin (their features are constant: the filters are narrower than the bins'
        spacing, from too many mels, too short a window or too narrow an ``f_min``..``f_max``); 0 for spectrogram."""
        if self.feature_type == "spectrogram":
            return 0
        high = self.f_max if self.f_max > 0 else self.sample_rate / 2.0
        low_mel, high_mel = _mel(self.f_min), _mel(high)
        edges = np.linspace(low_mel, high_mel, self.num_mels + 2)  # filter m spans edges[m] .. edges[m + 2]
        bins = _mel(np.arange(self.n_fft // 2 + 1) * self.sample_rate / self.n_fft)
        inside = np.searchsorted(bins, edges[2:], side="left") - np.searchsorted(bins, edges[:-2], side="right")
        return int((inside <= 0).sum())

    def to_dict(self) -> Dict[str, Any]:
        """The configuration as a plain dict (str, int, float values), as stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureConfig:
        """Build and validate a configuration from a mapping (a checkpoint's dict or an OmegaConf node).

        Missing keys take their defaults; integers are accepted for float fields.

        Args:
            values: field name -> value.

        Returns:
            The validated configuration.

        Raises:
            ConfigError: (a ValueError) an unknown key, a value of the wrong type, or a value outside its allowed
                range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown FeatureConfig keys {unknown}; allowed keys: {sorted(fields)}")
        kwargs: Dict[str, Any] = {}
        for name, value in values.items():
            kwargs[name] = _coerce(name, fields[name].type, value)
        return cls(**kwargs).validate()


def _standardize(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per bin, with the statistics of ``reference`` (F, D) applied to ``features`` (T, D)."""
    mean = reference.mean(dim=0, keepdim=True)
    std = reference.std(dim=0, correction=0, keepdim=True)
    return (features - mean) / (std + _STD_FLOOR)


def _speech_mask(features: torch.Tensor, log_range: float) -> torch.Tensor:
    """(T,) whether each frame of log-spectral ``features`` (T, D) has a mean level within ``log_range`` of the loud
    frames'."""
    levels = features.mean(dim=1)
    return levels >= torch.quantile(levels, _SPEECH_REFERENCE_PERCENTILE) - log_range


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    """Check ``value`` against a FeatureConfig field type ('str', 'int' or 'float'); ints are widened to float."""
    type_name = getattr(type_name, "__name__", type_name)
    if type_name == "str" and isinstance(value, str):
        return value
    if type_name == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if type_name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"FeatureConfig.{name} must be {type_name}, got {value!r} ({type(value).__name__})")


class FeatureExtractor:
    """Waveform -> (T, D) features, as configured by a :class:`FeatureConfig`.

    - ``fbank``: ``torchaudio.compliance.kaldi.fbank`` log mel filterbank energies (povey window).
    - ``mel``: log of the power spectrum through a mel filterbank (hann window).
    - ``mfcc``: orthonormal DCT-II of the ``mel`` features, first ``num_mfcc`` coefficients.
    - ``spectrogram``: log STFT magnitude, ``n_fft // 2 + 1`` bins (hann window).

    Features are computed on the waveform scaled to 16-bit sample units, then optionally normalized per utterance
    (``utterance``: over all frames; ``speech``: over the frames within about 35 dB of the utterance's loud frames,
    every bin first floored at the 5th percentile of those frames, so that leading and trailing silence, digital
    zeros included, neither shift the statistics nor reach the model as values it never saw). Without dither the
    output is a deterministic function of the waveform.

    Args:
        config: the feature settings (validated here).
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = dataclasses.replace(config).validate()
        cfg = self.config
        f_max = cfg.f_max if cfg.f_max > 0 else cfg.sample_rate / 2.0
        self._window = torch.hann_window(cfg.win_length, periodic=False, dtype=torch.float32)
        self._mel_bank: Optional[torch.Tensor] = None
        self._dct: Optional[torch.Tensor] = None
        if cfg.feature_type in ("mel", "mfcc"):
            # (n_fft // 2 + 1, num_mels)
            self._mel_bank = AF.melscale_fbanks(
                cfg.n_fft // 2 + 1, cfg.f_min, f_max, cfg.num_mels, cfg.sample_rate, norm=None, mel_scale="htk"
            )
        if cfg.feature_type == "mfcc":
            # (num_mels, num_mfcc)
            self._dct = AF.create_dct(cfg.num_mfcc, cfg.num_mels, norm="ortho")

    @property
    def feature_dim(self) -> int:
        """D, the number of feature bins per frame."""
        return self.config.feature_dim

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) the extractor expects its waveforms at."""
        return self.config.sample_rate

    def num_frames(self, num_samples: int) -> int:
        """T for a waveform of ``num_samples`` samples (0 when shorter than one window)."""
        if num_samples < self.config.win_length:
            return 0
        return 1 + (num_samples - self.config.win_length) // self.config.hop_length

    def without_dither(self) -> FeatureExtractor:
        """This extractor without dither (itself when it has none): what evaluation and transcription use, so that
        held-out figures are measured on the features inference sees, the same whatever the seed."""
        if self.config.dither == 0:
            return self
        return FeatureExtractor(dataclasses.replace(self.config, dither=0.0))

    def __call__(
        self,
        waveform: Union[np.ndarray, torch.Tensor],
        generator: Optional[torch.Generator] = None,
        where: str = "waveform",
    ) -> torch.Tensor:
        """Compute features.

        Args:
            waveform: (N,) float mono samples in [-1, 1] at ``config.sample_rate``.
            generator: random source for dither (only used when ``config.dither > 0``).
            where: the input (a file, an utterance), named in errors.

        Returns:
            (T, D) float32 features, ``T = 1 + (N - win_length) // hop_length``.

        Raises:
            ValueError: the waveform is not 1-D, holds NaN/Inf, or is shorter than one analysis window.
            AudioError: finite samples gave non-finite features (samples so far beyond full scale, e.g. 1e15, that
                their power overflows float32).
        """
        cfg = self.config
        samples = torch.as_tensor(waveform, dtype=torch.float32)
        if samples.dim() != 1:
            raise ValueError(f"waveform must have shape (N,), got {tuple(samples.shape)}")
        if samples.numel() < cfg.win_length:
            raise ValueError(
                f"waveform has {samples.numel()} samples, fewer than one analysis window "
                f"({cfg.win_length} samples = {cfg.frame_length_ms} ms at {cfg.sample_rate} Hz)"
            )
        if not torch.isfinite(samples).all():
            raise ValueError("waveform contains NaN/Inf samples")
        with torch.no_grad():
            samples = samples * _INT16_SCALE
            if cfg.dither > 0:
                noise = torch.randn(samples.shape, generator=generator, dtype=samples.dtype)
                samples = samples + cfg.dither * noise
            if cfg.feature_type == "fbank":
                features = self._fbank(samples)
            else:
                features = self._stft_features(samples)
            if not bool(torch.isfinite(features).all()):  # checked before normalizing, which would spread it
                peak = float(samples.abs().max()) / _INT16_SCALE
                raise AudioError(
                    f"{where}: the features are not finite (NaN/Inf): the samples peak at {peak:.3g} x full scale, so "
                    "their power overflows float32; scale the audio to [-1, 1]"
                )
            if cfg.normalize == "utterance":
                features = _standardize(features, features)
            elif cfg.normalize == "speech":
                # fbank and mel are log power, spectrogram log magnitude: half the range in its units
                speech = _speech_mask(features, _SPEECH_RANGE / (2.0 if cfg.feature_type == "spectrogram" else 1.0))
                floored = torch.maximum(features, torch.quantile(features[speech], _SPEECH_FLOOR_PERCENTILE, dim=0))
                features = _standardize(floored, floored[speech])
        return features.contiguous()

    def _fbank(self, samples: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return kaldi.fbank(
            samples.unsqueeze(0),
            num_mel_bins=cfg.num_mels,
            # Kaldi truncates milliseconds x rate to samples where the config rounds: given half a sample more, it
            # cuts the config's win_length / hop_length frames (20.06 ms at 16 kHz: 321 samples, not 320)
            frame_length=(cfg.win_length + 0.5) * 1000.0 / cfg.sample_rate,
            frame_shift=(cfg.hop_length + 0.5) * 1000.0 / cfg.sample_rate,
            sample_frequency=float(cfg.sample_rate),
            low_freq=cfg.f_min,
            high_freq=cfg.f_max,
            preemphasis_coefficient=cfg.preemphasis,
            dither=0.0,
            window_type="povey",
            snip_edges=True,
        )

    def _stft_features(self, samples: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.preemphasis > 0:
            samples = torch.cat([samples[:1], samples[1:] - cfg.preemphasis * samples[:-1]])
        frames = samples.unfold(0, cfg.win_length, cfg.hop_length) * self._window  # (T, win_length)
        magnitude = torch.fft.rfft(frames, n=cfg.n_fft).abs()  # (T, n_fft // 2 + 1)
        if cfg.feature_type == "spectrogram":
            return torch.log(magnitude + _LOG_FLOOR)
        log_mel = torch.log(magnitude.pow(2) @ self._mel_bank + _LOG_FLOOR)  # (T, num_mels)
        if cfg.feature_type == "mel":
            return log_mel
        return log_mel @ self._dct  # (T, num_mfcc)

    def from_file(self, path: Union[str, Path], generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Load an audio file (resampled to ``config.sample_rate``, mono) and compute its features.

        Args:
            path: the audio file.
            generator: random source for dither (only used when ``config.dither > 0``).

        Returns:
            (T, D) float32 features, identical to ``self(load_audio(path, config.sample_rate))``.

        Raises:
            FileNotFoundError: the file does not exist.
            AudioError: the file is unusable, shorter than one analysis window or gives non-finite features (the
                message names the file).
        """
        return self(self.load_waveform(path), generator=generator, where=str(path))

    def load_waveform(self, path: Union[str, Path]) -> np.ndarray:
        """Load an audio file as the extractor takes it: resampled to ``config.sample_rate``, mono.

        Returns:
            (N,) float32 samples, at least one analysis window long.

        Raises:
            FileNotFoundError: the file does not exist.
            AudioError: the file is unusable or shorter than one analysis window (the message names the file).
        """
        cfg = self.config
        return load_audio(path, sample_rate=cfg.sample_rate, min_duration_s=cfg.win_length / cfg.sample_rate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class SpecAugment:
    """SpecAugment frequency and time masking (no time warping) for training.

    Masked cells are set to 0, the mean of utterance-normalized features.

    Args:
        freq_mask_param: F, the widest frequency mask in bins (capped at D); ``None`` (the default) scales
            SpecAugment's 27 of 80 mel bins to the features' D (14 of 40, 87 of 257): a fixed 27 would mask more
            than half of 40 bins on average, and little of a 257-bin spectrogram.
        num_freq_masks: frequency masks per utterance.
        time_mask_ratio: the widest time mask as a fraction of the utterance's frames.
        num_time_masks: time masks per utterance.
    """

    FREQ_MASK_SHARE = 27 / 80
    """The widest frequency mask as a share of the bins when ``freq_mask_param`` is not given (SpecAugment's
    LibriSpeech policy: F = 27 of 80 mel bins)."""

    def __init__(
        self,
        freq_mask_param: Optional[int] = None,
        num_freq_masks: int = 2,
        time_mask_ratio: float = 0.05,
        num_time_masks: int = 2,
    ) -> None:
        if (freq_mask_param is not None and freq_mask_param < 0) or num_freq_masks < 0 or num_time_masks < 0:
            raise ValueError(
                "freq_mask_param, num_freq_masks and num_time_masks must be >= 0, got "
                f"{freq_mask_param}, {num_freq_masks}, {num_time_masks}"
            )
        if not 0.0 <= time_mask_ratio <= 1.0:
            raise ValueError(f"time_mask_ratio must be in [0, 1], got {time_mask_ratio}")
        self.freq_mask_param = None if freq_mask_param is None else int(freq_mask_param)
        self.num_freq_masks = int(num_freq_masks)
        self.time_mask_ratio = float(time_mask_ratio)
        self.num_time_masks = int(num_time_masks)

    def __call__(self, features: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Mask a copy of ``features``.

        Args:
            features: (T, D) features.
            generator: random source; the same generator state gives the same masks.

        Returns:
            (T, D) masked copy; ``features`` is left untouched.
        """
        if features.dim() != 2:
            raise ValueError(f"features must have shape (T, D), got {tuple(features.shape)}")
        masked = features.clone()
        num_frames, num_bins = masked.shape
        widest = round(self.FREQ_MASK_SHARE * num_bins) if self.freq_mask_param is None else self.freq_mask_param
        max_freq = min(widest, num_bins)
        for _ in range(self.num_freq_masks):
            start, width = _draw_span(num_bins, max_freq, generator)
            masked[:, start : start + width] = 0.0
        max_time = int(self.time_mask_ratio * num_frames)
        for _ in range(self.num_time_masks):
            start, width = _draw_span(num_frames, max_time, generator)
            masked[start : start + width, :] = 0.0
        return masked

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(freq_mask_param={self.freq_mask_param}, num_freq_masks={self.num_freq_masks}, "
            f"time_mask_ratio={self.time_mask_ratio}, num_time_masks={self.num_time_masks})"
        )


def _draw_span(size: int, max_width: int, generator: Optional[torch.Generator]) -> Tuple[int, int]:
    """Draw a mask width in [0, max_width] and a start so the span fits in ``size``."""
    width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
    start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
    return start, width
