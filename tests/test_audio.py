"""pipelines.audio.decode: every supported file decodes to 16 kHz mono float32; every broken one gives an
AudioError that names the file and says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.audio.decode import AudioError, decode, load, probe, safe_decode

TONE_HZ = 440.0


# --- the original files of the real corpora ----------------------------------------------------

# The 11 originals of raw-samples/ (data card): what each one exercises.
RAW_SAMPLES = {
    "ravdess/Actor_01/03-01-01-01-01-01-01.wav": "48 kHz mono",
    "ravdess/Actor_02/03-01-05-02-01-01-02.wav": "48 kHz mono",
    "ravdess/Actor_01/03-01-02-01-01-02-01.wav": "48 kHz stereo",
    "tess/OAF_Fear/OAF_food_fear.wav": "96 kHz",
    "tess/YAF_angry/YAF_germ_angry.wav": "AIFF named .wav",
    "tess/YAF_fear/YAF_neat_fear.wav": "AIFF named .wav",
    "tess/OAF_neutral/OA_bite_neutral.wav": "24414 Hz",
    "tess/OAF_angry/OAF_back_angry.wav": "24414 Hz",
    "tess/YAF_happy/YAF_back_happy.wav": "24414 Hz",
    "savee/DC_a01.wav": "44.1 kHz, DC offset, clipped",
    "savee/JE_sa01.wav": "44.1 kHz, DC offset",
}


@pytest.fixture(scope="module")
def samples(corpora) -> pd.DataFrame:
    table = pd.read_csv(corpora / "raw-samples" / "SAMPLES.csv", dtype=str)
    assert set(table["relpath"]) == set(RAW_SAMPLES)
    return table.set_index("relpath")


@pytest.mark.parametrize("relpath", sorted(RAW_SAMPLES))
def test_raw_sample_matches_the_shared_flac(relpath, samples, corpora):
    sample = samples.loc[relpath]
    original = corpora / "raw-samples" / relpath
    info = probe(original)
    assert (info.format, info.subtype) == (sample["format"], sample["subtype"])
    assert (info.sample_rate, info.channels, info.frames) == (
        int(sample["sample_rate"]), int(sample["channels"]), int(sample["frames"]))
    wave = load(original)
    flac, rate = sf.read(corpora / sample["flac_relpath"], dtype="float32")
    assert rate == 16000
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape == flac.shape
    # The FLACs were made with soxr VHQ in float64 and stored as 16-bit; we use HQ in float32.
    assert np.abs(wave - flac).max() < 2e-3
    assert np.corrcoef(wave, flac)[0, 1] > 0.9999


# --- generated files of every sample type and rate ---------------------------------------------

def tone(rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * TONE_HZ * t)


@pytest.mark.parametrize("rate", [24414, 44100, 48000, 96000])
@pytest.mark.parametrize("subtype, tolerance", [
    ("PCM_U8", 2e-2), ("PCM_16", 1e-3), ("PCM_24", 1e-3), ("PCM_32", 1e-3), ("FLOAT", 1e-3),
])
def test_generated_stereo_file_resamples_to_16k_mono(tmp_path, rate, subtype, tolerance):
    signal = tone(rate)
    wobble = 0.2 * np.sin(2 * np.pi * 97.0 * np.arange(len(signal)) / rate)
    stereo = np.stack([signal + wobble, signal - wobble], axis=1)  # mean of channels = signal
    path = tmp_path / f"{subtype}_{rate}.wav"
    sf.write(path, stereo, rate, subtype=subtype)
    decoded = decode(path)
    assert decoded.info.subtype == subtype and decoded.info.channels == 2
    assert decoded.info.sample_rate == rate and decoded.sample_rate == 16000
    wave = decoded.waveform
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - len(signal) * 16000 / rate) <= 1
    expected = tone(16000)[: len(wave)]
    middle = slice(len(wave) // 10, len(wave) * 9 // 10)  # resampler edges aside
    assert np.abs(wave[middle] - expected[middle]).max() < tolerance
    # Level statistics are of the original, before resampling.
    assert decoded.peak == pytest.approx(0.5, abs=tolerance)
    assert decoded.rms_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.2)


def test_sample_rate_none_keeps_the_original(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(44100), 44100)
    decoded = decode(path, sample_rate=None)
    assert decoded.sample_rate == 44100 and len(decoded.waveform) == 22050
    assert decoded.info.duration == pytest.approx(0.5)


def test_aiff_and_flac_are_read_by_content(tmp_path):
    aiff = tmp_path / "aiff_inside.wav"
    sf.write(aiff, tone(22050), 22050, format="AIFF")
    flac = tmp_path / "x.flac"
    sf.write(flac, tone(16000), 16000)
    assert probe(aiff).format == "AIFF"
    assert len(load(aiff)) == 8000 and len(load(flac)) == 8000


def test_dc_offset_is_measured(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(path, tone(16000) * 0.5 + 0.04, 16000, subtype="FLOAT")
    assert decode(path).dc_offset == pytest.approx(0.04, abs=1e-4)


# --- files that are not usable ------------------------------------------------------------------

def _good_wav_bytes(tmp_path) -> bytes:
    path = tmp_path / "good.wav"
    sf.write(path, tone(16000, 1.0), 16000, subtype="PCM_16")
    return path.read_bytes()


def _write(name: str):
    def build(tmp_path):
        path = tmp_path / "bad.wav"
        good = _good_wav_bytes(tmp_path)
        if name == "empty":
            path.write_bytes(b"")
        elif name == "truncated header":
            path.write_bytes(good[:30])
        elif name == "truncated data":
            path.write_bytes(good[: len(good) // 2])
        elif name == "text":
            path.write_text("this is a readme, not audio\n" * 20)
        elif name == "zero samples":
            sf.write(path, np.zeros((0, 1)), 16000)
        elif name == "nan":
            x = tone(16000).astype(np.float32)
            x[100] = np.nan
            sf.write(path, x, 16000, subtype="FLOAT")
        elif name == "too short":
            sf.write(path, tone(16000, 0.1), 16000)
        return path
    return build


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty file"),
    ("truncated header", "truncated header"),
    ("truncated data", "truncated: header declares"),
    ("text", "not an audio file"),
    ("zero samples", "no samples"),
    ("nan", "non-finite samples"),
    ("too short", "too short: 0.100 s"),
])
def test_bad_file_gives_audio_error(tmp_path, kind, reason):
    path = _write(kind)(tmp_path)
    with pytest.raises(AudioError) as caught:
        decode(path)
    err = caught.value
    assert err.path == str(path)
    assert reason in err.reason
    assert str(err) == f"{path}: {err.reason}" and "\n" not in str(err)
    returned = safe_decode(path)
    assert isinstance(returned, AudioError) and returned.reason == err.reason


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load(tmp_path / "nowhere.wav")


def test_minimum_duration_is_a_parameter(tmp_path):
    path = _write("too short")(tmp_path)
    assert len(load(path, min_duration=0.05)) == 1600


def test_silent_file_decodes_and_is_flagged(tmp_path):
    silent, quiet = tmp_path / "silent.wav", tmp_path / "quiet.wav"
    sf.write(silent, np.zeros(16000), 16000)
    sf.write(quiet, tone(16000) * 0.002, 16000)  # about -60 dBFS: quiet, not silent
    decoded = decode(silent)
    assert decoded.silent and decoded.peak == 0.0
    assert len(decoded.waveform) == 16000 and not decoded.waveform.any()
    assert not decode(quiet).silent
