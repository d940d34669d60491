"""Decode any audio file to 16 kHz mono float32, or fail with one clear, typed error.

soundfile (libsndfile) picks the decoder from the file's content, not its name, so the TESS
files that are AIFF inside a `.wav` name load like any other; soxr resamples (the same 'HQ'
setting that `librosa.load` uses). tensorflow-io's decoders are not used: its native ops do not
load on TensorFlow >= 2.18.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_DURATION = 0.25  # seconds; shorter clips carry too little speech to label
SILENCE_DBFS = -70.0  # a file whose peak is below this is flagged as silent
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3")


class AudioError(ValueError):
    """A file that cannot be used as audio; str() is '<path>: <reason>' on one line."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What the file itself says, before any conversion."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded clip: `waveform` at `sample_rate`, mono; level statistics of the original."""

    waveform: np.ndarray
    sample_rate: int
    info: AudioInfo
    peak: float  # max |x| of the mono original, full scale = 1
    rms: float  # root mean square of the mono original
    dc_offset: float

    @property
    def silent(self) -> bool:
        return self.peak <= 10 ** (SILENCE_DBFS / 20)

    @property
    def rms_dbfs(self) -> float:
        return float(20 * np.log10(max(self.rms, 1e-10)))


def _header_reason(path: Path, message: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_MAGIC):
        return f"corrupt or truncated header ({message})"
    return "not an audio file (format not recognised)"


def _check_truncation(path: Path, size: int) -> None:
    """WAV/AIFF files cut short still open in libsndfile, with fewer frames: say so instead."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            order, chunk_id = "<", b"data"
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            order, chunk_id = ">", b"SSND"
        else:
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            cid, length = struct.unpack(order + "4sI", f.read(8))
            if cid == chunk_id:
                available = size - offset - 8
                if 0 < length < 0xFFFFFFFF and length > available:
                    raise AudioError(
                        path,
                        f"truncated: header declares {length} bytes of audio, "
                        f"the file holds {available}",
                    )
                return
            offset += 8 + length + (length & 1)


def probe(path) -> AudioInfo:
    """Read a file's header; raise AudioError if it is missing, empty or not audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found" if not path.exists() else "not a file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, _header_reason(path, _libsndfile_message(err))) from None
    if info.frames <= 0:
        raise AudioError(path, "no samples (0 frames)")
    _check_truncation(path, size)
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames),
                     info.format, info.subtype)


def _libsndfile_message(err: Exception) -> str:
    text = str(err)
    return text.split(": ", 1)[-1].strip() if "Error" in text else text


def decode(
    path,
    sample_rate: int | None = SAMPLE_RATE,
    min_duration: float = MIN_DURATION,
    quality: str = "HQ",
) -> Decoded:
    """Decode to mono float32 at `sample_rate` (None keeps the file's rate).

    Raises AudioError naming the file and the reason: missing, empty, corrupt or truncated
    header, truncated data, not audio, no samples, non-finite samples, or shorter than
    `min_duration` seconds. All-silent files decode; `Decoded.silent` flags them.
    """
    info = probe(path)
    try:
        data, _ = sf.read(info.path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"corrupt audio data ({_libsndfile_message(err)})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "no samples (0 frames)")
    if not np.isfinite(data).all():
        raise AudioError(path, f"non-finite samples ({int((~np.isfinite(data)).sum())} NaN/Inf)")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    duration = mono.shape[0] / info.sample_rate
    if duration < min_duration:
        raise AudioError(path, f"too short: {duration:.3f} s < minimum {min_duration} s")
    peak = float(np.abs(mono).max())
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    dc = float(mono.mean(dtype=np.float64))
    target = sample_rate or info.sample_rate
    wave = mono
    if target != info.sample_rate:
        wave = soxr.resample(mono, info.sample_rate, target, quality=quality).astype(np.float32)
    return Decoded(np.ascontiguousarray(wave), target, info, peak, rms, dc)


def load(path, sample_rate: int = SAMPLE_RATE, **kwargs) -> np.ndarray:
    """The waveform only: 1-D float32 at `sample_rate` (16 kHz by default), mono."""
    return decode(path, sample_rate, **kwargs).waveform


def safe_decode(path, **kwargs) -> Decoded | AudioError:
    """decode(), but an AudioError is returned instead of raised (for process pools)."""
    try:
        return decode(path, **kwargs)
    except AudioError as err:
        return err
    except (OSError, MemoryError) as err:  # e.g. unreadable file, permission denied
        return AudioError(path, f"cannot read ({err.__class__.__name__}: {err})")


def describe(path: os.PathLike | str) -> str:  # pragma: no cover - debugging helper
    d = decode(path, sample_rate=None)
    return (f"{path}: {d.info.format}/{d.info.subtype} {d.info.sample_rate} Hz "
            f"{d.info.channels} ch {d.info.duration:.2f} s peak {d.peak:.3f}")
