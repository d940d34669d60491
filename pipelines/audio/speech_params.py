"""The parameters of speech activity (pipelines.audio.speech_activity): the analysis constants
and SpeechActivityParams, the thresholds an export stores in zoo.json `reliability`, with their
checks and JSON form. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from pipelines.common.fields import JsonFields

PARAMS_VERSION = 1
SAMPLE_RATE = 16000
DECIMATION = 4  # analysis at 4 kHz
CUTOFF_HZ = 1800.0  # the band the spectral cues look at
FRAME = 160  # 40 ms at 4 kHz
HOP = 80  # 20 ms at 4 kHz
FFT = 256  # >= FRAME + the longest pitch lag: the autocorrelation does not wrap
_TINY = 1e-12


class ParamsError(ValueError):
    """SpeechActivityParams (or their JSON) that cannot be used."""


@dataclasses.dataclass(frozen=True)
class SpeechActivityParams(JsonFields):
    """The thresholds of speech activity (see the module docstring for what each one gates).

    abs_floor_db: a frame quieter than this (mean square, dB re full scale, 0-1.8 kHz) is
        never speech.
    floor_percentile: the clip's noise floor is this percentile of its frame energies.
    snr_db: an active frame is at least this far above the clip's noise floor.
    f0_min / f0_max: the pitch range searched, Hz.
    voicing_min: normalised autocorrelation peak a voiced frame reaches (0-1).
    octave_tolerance: the pitch is the shortest lag whose peak is this close to the highest.
    steady_cents: a pitch step smaller than this (cents per 20 ms) is machine-steady...
    steady_frames: ...when this many such steps follow each other.
    min_run_frames: speech runs shorter than this many frames are dropped.
    no_speech_threshold: speech_ratio below this is the status 'no_speech'.
    """

    _ERROR = ParamsError  # JsonFields: to_dict / to_json / from_dict / from_json
    _OBJECT = "speech activity parameters are"
    _NAME = "speech activity"

    abs_floor_db: float = -75.0
    floor_percentile: float = 10.0
    snr_db: float = 6.0
    f0_min: float = 60.0
    f0_max: float = 500.0
    voicing_min: float = 0.6
    octave_tolerance: float = 0.05
    tonal_db: float = 30.0
    steady_cents: float = 10.0
    steady_span: int = 4
    steady_neighbours: int = 3
    min_run_frames: int = 4
    no_speech_threshold: float = 0.04  # chosen by bench/speech_activity.py
    sample_rate: int = SAMPLE_RATE
    version: int = PARAMS_VERSION

    def __post_init__(self):
        ints = ("steady_span", "steady_neighbours", "min_run_frames", "sample_rate", "version")
        wrong = [f"{name} must be an integer, got {getattr(self, name)!r}" for name in ints
                 if not isinstance(getattr(self, name), numbers.Integral)
                 or isinstance(getattr(self, name), bool)]
        wrong += [f"{f.name} must be a number, got {getattr(self, f.name)!r}"
                  for f in dataclasses.fields(self) if f.name not in ints
                  and (not isinstance(getattr(self, f.name), numbers.Real)
                       or isinstance(getattr(self, f.name), bool)
                       or not math.isfinite(getattr(self, f.name)))]
        if wrong:
            raise ParamsError("; ".join(wrong))
        problems = []
        if self.sample_rate != SAMPLE_RATE:
            problems.append(f"sample_rate must be {SAMPLE_RATE}")
        if self.version != PARAMS_VERSION:
            problems.append(f"params version {self.version} is not {PARAMS_VERSION}")
        if not 0 <= self.floor_percentile <= 100:
            problems.append("floor_percentile must be in [0, 100]")
        if self.snr_db < 0:
            problems.append("snr_db must be >= 0")
        rate = SAMPLE_RATE / DECIMATION
        if not rate / (FFT - FRAME - 2) <= self.f0_min < self.f0_max <= rate / 4:
            problems.append(f"need {rate / (FFT - FRAME - 2):.1f} <= f0_min < f0_max "
                            f"<= {rate / 4:.0f} Hz")
        for name in ("voicing_min", "octave_tolerance", "no_speech_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1]")
        if self.steady_cents < 0 or self.tonal_db < 0:
            problems.append("steady_cents and tonal_db must be >= 0")
        if self.steady_span < 1 or self.min_run_frames < 1:
            problems.append("steady_span and min_run_frames must be >= 1")
        if not 1 <= self.steady_neighbours <= 2 * self.steady_span + 1:
            problems.append("steady_neighbours must be in [1, 2 steady_span + 1]")
        if problems:
            raise ParamsError("; ".join(problems))

    @property
    def lag_range(self) -> tuple[int, int]:
        """Pitch lags searched, in samples at the analysis rate (4 kHz)."""
        rate = SAMPLE_RATE / DECIMATION
        return int(math.floor(rate / self.f0_max)), int(math.ceil(rate / self.f0_min))

    @property
    def frame_seconds(self) -> float:
        """Time between frames (frame t is centred at t * frame_seconds)."""
        return HOP * DECIMATION / SAMPLE_RATE


DEFAULT_PARAMS = SpeechActivityParams()
