"""A synthetic non-speech test set, made by code (no downloads): what a speech-activity check
must call 'no speech', and the same sounds with one short word of real speech inside.

    clips = synthetic_set(seeds=range(4), seconds=(0.5, 1.0, 2.0, 4.0))
    for clip in clips: clip.name, clip.kind, clip.family, clip.speech, clip.waveform

Every clip is 16 kHz mono float32 in [-1, 1], deterministic: the same (kind, seed, seconds)
always gives the same samples (numpy's PCG64 seeded from the three). The kinds, by family:

    silence   digital_zero, dither (16-bit TPDF dither, about -101 dBFS), hiss (white, -80 dBFS)
    noise     white and pink noise at -60, -40, -20 and -10 dBFS; noise_bursts (white noise
              switched on and off at random, 40-400 ms at a time)
    tone      hum_50 (50 Hz mains hum with harmonics), tone_220/440/1000/3000 (pure), beeps
              (1 kHz, 100-300 ms on / off), tremolo (440 Hz, 4 Hz amplitude modulation)
    sweep     sweep_linear (100 Hz -> 4 kHz), sweep_log (50 Hz -> 8 kHz), siren (600-1200 Hz),
              chirps (80-300 ms glides between 0.5 and 4 kHz, with gaps)
    click     clicks (isolated, about 3 a second, random times), impulse_train_10 (10 Hz),
              impulse_train_100 (100 Hz buzz)
    music     chord (3-4 harmonic notes, struck and decaying, a new chord every 0.5-1 s),
              sine_chord (pure-sine triads with envelopes), melody (one line of harmonic notes,
              3-6 a second, attack-decay envelopes, no gaps), melody_chord (a melody over held
              chords)
    dc        dc_offset (a constant offset plus dither), dc_steps (an offset that jumps)
    clipping  clipped_tone (440 Hz driven 12 dB over full scale, clipped), clipped_beeps

Tone, music and noise levels vary with the seed (-30 to -10 dBFS unless the name says).

Speech versions (`speech=True`, kind `<background>+word`): a 0.4-0.6 s stretch of voiced speech
cut from a clip of the bundled RAVDESS demo sample (its loudest stretch, 10 ms fades), at
-26 dBFS RMS (a usual speech level), placed at a random time in the background; the background
is scaled to a signal-to-noise ratio drawn from SNRS_DB (20, 10, 5, 0 dB; word RMS over
background RMS), except silence and DC backgrounds, which keep their own level (snr_db None).
In a 0.5 s clip the word is cut to fit.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000
DEMO_RAVDESS = Path(__file__).resolve().parents[2] / "zoo" / "data" / "demo" / "ravdess"
SECONDS = (0.5, 1.0, 2.0, 4.0)
SEEDS = (0, 1, 2, 3)
WORD_DBFS = -26.0
WORD_SECONDS = (0.4, 0.6)
SNRS_DB = (20.0, 10.0, 5.0, 0.0)
# backgrounds of the speech versions (one of each family at least)
SPEECH_BACKGROUNDS = ("digital_zero", "dither", "white_-40", "pink_-40", "noise_bursts",
                      "hum_50", "tone_440", "beeps", "sweep_log", "clicks", "chord",
                      "melody", "melody_chord", "dc_offset", "clipped_tone")
_NO_SNR = ("silence", "dc")


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticClip:
    """One clip: name = '<kind>/s<seed>/<seconds>s', unique within a set."""

    name: str
    kind: str
    family: str
    seed: int
    seconds: float
    waveform: np.ndarray
    speech: bool = False  # a word of real speech inside
    snr_db: float | None = None  # word RMS over background RMS, speech clips only
    word: str = ""  # the demo file the word was cut from


# ---------------------------------------------------------------- building blocks

def _rng(kind: str, seed: int, seconds: float) -> np.random.Generator:
    key = zlib.crc32(f"{kind}|{seed}|{seconds:g}".encode())
    return np.random.default_rng([seed, key])


def _time(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _at_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return x * (10 ** (dbfs / 20) / rms) if rms > 0 else x


def _level(rng, low: float = -30.0, high: float = -10.0) -> float:
    return float(rng.uniform(low, high))


def _pink(rng, n: int) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _dither(rng, n: int) -> np.ndarray:
    """TPDF dither of one 16-bit step."""
    return (rng.uniform(-0.5, 0.5, n) + rng.uniform(-0.5, 0.5, n)) / 32768


def _harmonic(freq: float, t: np.ndarray, harmonics: int = 6, phase: float = 0.0):
    """A harmonic tone with 1/k amplitudes (a plain instrument-like timbre), below 7 kHz."""
    out = np.zeros_like(t)
    for k in range(1, harmonics + 1):
        if k * freq < 7000:
            out += np.sin(2 * np.pi * k * freq * t + k * phase) / k
    return out


def _note_envelope(n: int, attack: float = 0.01, decay: float = 0.4) -> np.ndarray:
    """Attack then exponential decay (time constant `decay` s), n samples."""
    t = _time(n)
    return np.minimum(t / attack, 1.0) * np.exp(-t / decay)


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _on_off(rng, n: int, on: tuple[float, float], off: tuple[float, float]) -> np.ndarray:
    """A 0/1 gate switching at random durations (seconds), 5 ms ramps."""
    gate = np.zeros(n)
    pos, state = int(rng.uniform(0, off[1]) * SAMPLE_RATE), 1
    while pos < n:
        length = int(rng.uniform(*(on if state else off)) * SAMPLE_RATE)
        gate[pos:pos + length] = state
        pos, state = pos + length, 1 - state
    ramp = int(0.005 * SAMPLE_RATE)
    return np.convolve(gate, np.ones(ramp) / ramp, mode="same")


# ---------------------------------------------------------------- the kinds

def _noise(colour: str, dbfs: float | None):
    def make(rng, n):
        x = rng.standard_normal(n) if colour == "white" else _pink(rng, n)
        return _at_rms(x, _level(rng) if dbfs is None else dbfs)
    return make


def _tone(freq: float):
    def make(rng, n):
        phase = rng.uniform(0, 2 * np.pi)
        return _at_rms(np.sin(2 * np.pi * freq * _time(n) + phase), _level(rng))
    return make


def _hum(rng, n):
    t = _time(n)
    x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
    return _at_rms(x, _level(rng, -40, -20))


def _beeps(rng, n):
    x = np.sin(2 * np.pi * 1000 * _time(n)) * _on_off(rng, n, (0.1, 0.3), (0.1, 0.3))
    return _at_rms(x, _level(rng))


def _tremolo(rng, n):
    t = _time(n)
    x = np.sin(2 * np.pi * 440 * t) * (1 + 0.9 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
    return _at_rms(x, _level(rng))


def _sweep(start: float, end: float, log: bool):
    def make(rng, n):
        t = _time(n)
        span = max(t[-1], 1 / SAMPLE_RATE)
        if log:
            rate = np.log(end / start) / span
            phase = 2 * np.pi * start * (np.exp(rate * t) - 1) / rate
        else:
            phase = 2 * np.pi * (start * t + (end - start) * t ** 2 / (2 * span))
        return _at_rms(np.sin(phase), _level(rng))
    return make


def _siren(rng, n):
    t = _time(n)
    freq = 900 + 300 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))
    return _at_rms(np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE), _level(rng))


def _chirps(rng, n):
    """Short tone glides (bird- or whistle-like): 80-300 ms each, 0.5-4 kHz, Hann envelopes."""
    out, pos = np.zeros(n), int(rng.uniform(0, 0.2) * SAMPLE_RATE)
    while pos < n:
        length = int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
        start, end = rng.uniform(500, 4000, 2)
        freq = np.linspace(start, end, length)
        piece = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.hanning(length)
        out[pos:pos + length] = piece[:n - pos]
        pos += length + int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    return _at_rms(out, _level(rng))


def _clicks(rng, n):
    x = 1e-4 * rng.standard_normal(n)
    count = max(1, rng.poisson(3 * n / SAMPLE_RATE))
    for pos in rng.integers(0, n, count):
        x[pos:pos + 3] += rng.choice([-1, 1]) * np.array([0.8, -0.4, 0.2])[:n - pos]
    return x * 10 ** (_level(rng, -6, 0) / 20)


def _impulses(rate: float):
    def make(rng, n):
        x = np.zeros(n)
        x[int(rng.uniform(0, SAMPLE_RATE / rate))::int(round(SAMPLE_RATE / rate))] = 1.0
        return x * 10 ** (_level(rng, -12, -1) / 20)
    return make


def _notes(rng, n: int, per_second: tuple[float, float], chord: int, low: int, high: int,
           harmonics: int, decay: float) -> np.ndarray:
    """Notes (or chords of `chord` notes, equal temperament) struck one after another."""
    out, pos = np.zeros(n), 0
    while pos < n:
        length = int(SAMPLE_RATE / rng.uniform(*per_second))
        root = rng.integers(low, high)
        steps = (0, 4, 7, 12) if rng.random() < 0.5 else (0, 3, 7, 10)
        piece = n - pos
        t = _time(min(piece, length + int(0.5 * SAMPLE_RATE)))
        sound = sum(_harmonic(_midi_hz(root + s), t, harmonics, rng.uniform(0, 6))
                    for s in steps[:chord])
        sound = sound * _note_envelope(t.size, decay=decay)
        out[pos:pos + t.size] += sound
        pos += length
    return out


def _chord(rng, n):
    return _at_rms(_notes(rng, n, (1.0, 2.0), int(rng.integers(3, 5)), 48, 67, 6, 0.6),
                   _level(rng))


def _sine_chord(rng, n):
    return _at_rms(_notes(rng, n, (1.0, 2.0), 3, 55, 79, 1, 0.5), _level(rng))


def _melody(rng, n):
    return _at_rms(_notes(rng, n, (3.0, 6.0), 1, 57, 81, 8, 0.3), _level(rng))


def _melody_chord(rng, n):
    held = _notes(rng, n, (0.5, 1.0), 3, 48, 60, 4, 2.0)
    tune = _notes(rng, n, (3.0, 6.0), 1, 64, 84, 6, 0.25)
    return _at_rms(_at_rms(held, -6) + _at_rms(tune, 0), _level(rng))


def _dc_offset(rng, n):
    return rng.choice([-1, 1]) * rng.uniform(0.05, 0.3) + _dither(rng, n)


def _dc_steps(rng, n):
    steps = np.repeat(rng.uniform(-0.3, 0.3, 1 + n // 4000), 4000)[:n]
    return steps + _dither(rng, n)


def _clipped_tone(rng, n):
    x = 4.0 * np.sin(2 * np.pi * 440 * _time(n) + rng.uniform(0, 6))
    return np.clip(x, -1, 1) * rng.uniform(0.3, 1.0)


def _clipped_beeps(rng, n):
    x = 4.0 * np.sin(2 * np.pi * 880 * _time(n)) * _on_off(rng, n, (0.1, 0.3), (0.1, 0.3))
    return np.clip(x, -1, 1) * rng.uniform(0.3, 1.0)


def _kinds() -> dict[str, tuple[str, Callable]]:
    kinds = {
        "digital_zero": ("silence", lambda rng, n: np.zeros(n)),
        "dither": ("silence", _dither),
        "hiss": ("silence", _noise("white", -80.0)),
    }
    for colour in ("white", "pink"):
        for dbfs in (-60, -40, -20, -10):
            kinds[f"{colour}_{dbfs}"] = ("noise", _noise(colour, float(dbfs)))
    kinds["noise_bursts"] = ("noise", lambda rng, n: _noise("white", None)(rng, n) *
                             _on_off(rng, n, (0.04, 0.4), (0.1, 0.5)))
    kinds["hum_50"] = ("tone", _hum)
    for freq in (220, 440, 1000, 3000):
        kinds[f"tone_{freq}"] = ("tone", _tone(float(freq)))
    kinds.update({
        "beeps": ("tone", _beeps), "tremolo": ("tone", _tremolo),
        "sweep_linear": ("sweep", _sweep(100.0, 4000.0, log=False)),
        "sweep_log": ("sweep", _sweep(50.0, 8000.0, log=True)),
        "siren": ("sweep", _siren), "chirps": ("sweep", _chirps),
        "clicks": ("click", _clicks),
        "impulse_train_10": ("click", _impulses(10.0)),
        "impulse_train_100": ("click", _impulses(100.0)),
        "chord": ("music", _chord), "sine_chord": ("music", _sine_chord),
        "melody": ("music", _melody), "melody_chord": ("music", _melody_chord),
        "dc_offset": ("dc", _dc_offset), "dc_steps": ("dc", _dc_steps),
        "clipped_tone": ("clipping", _clipped_tone), "clipped_beeps": ("clipping", _clipped_beeps),
    })
    return kinds


KINDS = _kinds()


def kinds() -> list[str]:
    """The non-speech kinds, in a fixed order."""
    return list(KINDS)


def family(kind: str) -> str:
    """The family of a kind ('tone_440' -> 'tone'; 'tone_440+word' -> 'tone')."""
    return KINDS[kind.split("+")[0]][0]


def make(kind: str, seed: int = 0, seconds: float = 2.0) -> SyntheticClip:
    """One pure non-speech clip."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {', '.join(KINDS)}")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    fam, fn = KINDS[kind]
    n = max(1, int(round(seconds * SAMPLE_RATE)))
    wave = np.clip(fn(_rng(kind, seed, seconds), n), -1.0, 1.0).astype(np.float32)
    return SyntheticClip(f"{kind}/s{seed}/{seconds:g}s", kind, fam, seed, seconds, wave)


# ---------------------------------------------------------------- words of real speech

@functools.lru_cache(maxsize=1)
def demo_files(root: str = str(DEMO_RAVDESS)) -> tuple[str, ...]:
    files = tuple(sorted(str(p) for p in Path(root).rglob("*.flac")))
    if not files:
        raise FileNotFoundError(f"{root}: no demo clips (.flac) to cut words from")
    return files


@functools.lru_cache(maxsize=256)
def _decoded(path: str) -> np.ndarray:
    from pipelines.audio.decode import load

    return load(path)


def cut_word(path: str, seconds: float) -> np.ndarray:
    """The loudest `seconds` of a clip (by 10 ms frame energy), 10 ms fades in and out."""
    wave = _decoded(path)
    n = min(int(round(seconds * SAMPLE_RATE)), wave.size)
    energy = np.convolve(np.square(wave, dtype=np.float64), np.ones(n), mode="valid")
    start = int(np.argmax(energy))
    word = wave[start:start + n].astype(np.float64)
    fade = min(int(0.01 * SAMPLE_RATE), n // 2)
    ramp = np.linspace(0, 1, fade, endpoint=False)
    word[:fade] *= ramp
    word[n - fade:] *= ramp[::-1]
    return word


def with_word(kind: str, seed: int = 0, seconds: float = 2.0,
              snr_db: float | None = None) -> SyntheticClip:
    """A clip of `kind` with a word of real speech inside (see the module docstring); snr_db
    None draws it from SNRS_DB with the clip's own seed."""
    base = make(kind, seed, seconds)
    rng = _rng(kind + "+word", seed, seconds)
    files = demo_files()
    path = files[int(rng.integers(len(files)))]
    length = min(rng.uniform(*WORD_SECONDS), seconds - 0.05) if seconds > 0.1 else seconds
    word = _at_rms(cut_word(path, length), WORD_DBFS)
    background = base.waveform.astype(np.float64)
    drawn = SNRS_DB[int(rng.integers(len(SNRS_DB)))]
    snr = None
    if base.family not in _NO_SNR:
        snr = drawn if snr_db is None else float(snr_db)
        background = _at_rms(background, WORD_DBFS - snr)
    start = int(rng.integers(0, max(1, background.size - word.size + 1)))
    mixed = background.copy()
    mixed[start:start + word.size] += word[:background.size - start]
    wave = np.clip(mixed, -1.0, 1.0).astype(np.float32)
    return SyntheticClip(f"{kind}+word/s{seed}/{seconds:g}s", f"{kind}+word", base.family,
                         seed, seconds, wave, speech=True, snr_db=snr,
                         word=str(Path(path).relative_to(Path(path).parents[1])))


def synthetic_set(seeds=SEEDS, seconds=SECONDS, speech: bool = True,
                  backgrounds=SPEECH_BACKGROUNDS) -> list[SyntheticClip]:
    """Every kind x seed x length, then (speech=True) every background x seed x length with a
    word inside."""
    clips = [make(kind, seed, s) for kind in KINDS for seed in seeds for s in seconds]
    if speech:
        clips += [with_word(kind, seed, s) for kind in backgrounds for seed in seeds
                  for s in seconds]
    return clips
