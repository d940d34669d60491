"""FeatureSpec: the one data contract between TFRecords, training, export and explanation.

A frozen dataclass, stored as JSON beside every TFRecord set, run and SavedModel. The same
`pipelines.features.extract.compute(waveform, length, spec)` turns waveforms into features everywhere.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path

from pipelines.common.fields import JsonFields

SPEC_VERSION = 1
# The zoo's silence trimming: 40 dB below the loudest frame (RAVDESS clips are about 30% digital
# silence); the models' default specs (zoo.models) and the Whisper embeddings use it.
TRIM_DB = 40.0
KINDS = ("logmel", "mfcc", "whisper_logmel")
# Whisper's front end (WhisperFeatureExtractor): fixed but for n_mels (80; 128 for large-v3),
# trimming and DC removal.
WHISPER_FIXED = {"sample_rate": 16000, "win_length": 400, "hop_length": 160, "n_fft": 400,
                 "fmin": 0.0, "fmax": 8000.0, "log_floor": 1e-10, "top_db": 80.0,
                 "normalization": "none"}
NORMALIZATIONS = ("utterance", "none")
_INTS = ("sample_rate", "win_length", "hop_length", "n_fft", "n_mels", "n_mfcc", "version")
_REALS = ("fmin", "log_floor")
_OPTIONAL_REALS = ("fmax", "top_db", "trim_db")


class SpecError(ValueError):
    """A FeatureSpec (or its JSON) that cannot be used."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec(JsonFields):
    """How a 16 kHz waveform becomes a [time, channels] feature matrix.

    kind: 'logmel' (n_mels channels), 'mfcc' (n_mfcc cepstral coefficients + 1 log energy) or
        'whisper_logmel' (Whisper's log-Mel: 400-point STFT, power, Slaney mel, log10 clamped
        at max - 8, (x + 4) / 4; left edge reflected as Whisper's, fixed settings but n_mels).
    win_length / hop_length / n_fft: analysis window, hop and FFT size in samples (frames are
        centred, as in librosa with center=True and zero padding).
    fmin / fmax: mel filterbank range in Hz (fmax None = Nyquist); Slaney mel scale and
        normalisation, as librosa's defaults.
    log_floor: power floor before 10*log10 (librosa's `amin`).
    top_db: per-utterance clamp of the log values at (max - top_db) dB, as librosa's
        power_to_db; makes the floor independent of recording level. None disables it.
    normalization: 'utterance' = mean/variance per channel over the clip's own frames
        (padding never counts); 'none' = raw dB / cepstra.
    remove_dc: subtract the clip's mean sample value first (SAVEE carries a DC offset).
    trim_db: trim leading and trailing frames quieter than (loudest frame - trim_db) dB
        before anything else, as librosa.effects.trim; None keeps the whole clip.
    """

    _ERROR = SpecError  # JsonFields: to_dict / to_json / from_dict / from_json
    _OBJECT = "a FeatureSpec is"
    _NAME = "FeatureSpec"

    kind: str = "logmel"
    sample_rate: int = 16000
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = 8000.0
    n_mfcc: int = 40
    log_floor: float = 1e-10
    top_db: float | None = 80.0
    normalization: str = "utterance"
    remove_dc: bool = True
    trim_db: float | None = None
    version: int = SPEC_VERSION

    def __post_init__(self):
        self._check_types()
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization must be one of {NORMALIZATIONS}")
        if not 0 < self.win_length <= self.n_fft:
            problems.append("need 0 < win_length <= n_fft")
        if self.n_fft % 2:
            problems.append("n_fft must be even")
        if self.hop_length <= 0:
            problems.append("hop_length must be positive")
        if self.n_mels <= 0:
            problems.append("n_mels must be positive")
        if self.log_floor <= 0:
            problems.append("log_floor must be positive")
        for name in ("top_db", "trim_db"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (or None)")
        nyquist = self.sample_rate / 2
        if not 0 <= self.fmin < (self.fmax or nyquist) <= nyquist:
            problems.append(f"need 0 <= fmin < fmax <= {nyquist}")
        if self.kind == "mfcc" and not 0 < self.n_mfcc <= self.n_mels:
            problems.append("need 0 < n_mfcc <= n_mels")
        if self.kind == "whisper_logmel":
            problems += [f"whisper_logmel is Whisper's own front end: {name} must be {value!r}"
                         for name, value in WHISPER_FIXED.items()
                         if getattr(self, name) != value]
        if self.version != SPEC_VERSION:
            problems.append(f"spec version {self.version} is not {SPEC_VERSION}")
        if problems:
            raise SpecError("; ".join(problems))

    def _check_types(self):
        """Wrong types (e.g. "160" from hand-edited JSON) fail here, not deep inside TF."""
        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool)

        wrong = [f"{n} must be an integer, got {getattr(self, n)!r}"
                 for n in _INTS if not is_int(getattr(self, n))]
        wrong += [f"{n} must be a number, got {getattr(self, n)!r}"
                  for n in _REALS if not is_real(getattr(self, n))]
        wrong += [f"{n} must be a number or None, got {getattr(self, n)!r}"
                  for n in _OPTIONAL_REALS
                  if getattr(self, n) is not None and not is_real(getattr(self, n))]
        wrong += [f"{n} must be a string, got {getattr(self, n)!r}"
                  for n in ("kind", "normalization") if not isinstance(getattr(self, n), str)]
        if not isinstance(self.remove_dc, bool):
            wrong.append(f"remove_dc must be true or false, got {self.remove_dc!r}")
        if wrong:
            raise SpecError("; ".join(wrong))

    @property
    def channels(self) -> int:
        """Feature channels: n_mels for log-Mel, n_mfcc + 1 (log energy) for MFCC."""
        return self.n_mfcc + 1 if self.kind == "mfcc" else self.n_mels

    @property
    def channel_names(self) -> list[str]:
        if self.kind == "mfcc":
            return [f"c{i}" for i in range(self.n_mfcc)] + ["log_energy"]
        return [f"mel{i}" for i in range(self.n_mels)]

    def frames(self, num_samples: int) -> int:
        """Frames for a clip of num_samples (centred framing)."""
        return 1 + num_samples // self.hop_length

    def save(self, path) -> None:
        from pipelines.common.io import write_text_atomic

        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> "FeatureSpec":
        path = Path(path)
        try:
            return cls.from_json(path.read_text())
        except OSError as err:
            raise SpecError(f"{path}: cannot read FeatureSpec ({err.strerror})") from None
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None


def mfcc_spec(**changes) -> FeatureSpec:
    """The MFCC contract of the zoo: 40 coefficients + log energy."""
    return FeatureSpec(kind="mfcc", **changes)


def whisper_spec(**changes) -> FeatureSpec:
    """Whisper's log-Mel front end (80 bands; n_mels=128 for large-v3)."""
    return FeatureSpec(**{"kind": "whisper_logmel", "n_mels": 80, "remove_dc": False,
                          **WHISPER_FIXED, **changes})


def logmel_spec(**changes) -> FeatureSpec:
    """The log-Mel contract of the zoo: 64 mel bands."""
    return FeatureSpec(kind="logmel", **changes)
