"""Speech activity on the graph (pipelines.audio.speech_activity) and the synthetic non-speech set
(pipelines.audio.synthetic): non-speech below the threshold, the bundled demo speech above it, the
same answer alone or padded in a batch, any length, and a tf.function that compiles with XLA
and survives a SavedModel round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from pipelines.audio import speech_activity as S
from pipelines.audio import synthetic as Y
from pipelines.audio.decode import load

from conftest import DEMO

PARAMS = S.DEFAULT_PARAMS


def padded(waves, extra: int = 777):
    lengths = np.array([len(w) for w in waves], np.int32)
    batch = np.zeros((len(waves), lengths.max() + extra), np.float32)
    for row, wave in enumerate(waves):
        batch[row, :len(wave)] = wave
    return batch, lengths


def ratios(waves, params=PARAMS) -> np.ndarray:
    """speech_ratio of many clips, in batches of similar length."""
    out = np.zeros(len(waves))
    order = np.argsort([len(w) for w in waves])
    for start in range(0, len(order), 64):
        idx = order[start:start + 64]
        batch, lengths = padded([waves[i] for i in idx], extra=0)
        out[idx] = S.speech_ratio(batch, lengths, params).numpy()
    return out


@pytest.fixture(scope="module")
def demo_waves() -> dict[str, np.ndarray]:
    return {p.name: load(p) for p in sorted(DEMO.rglob("*.flac"))}


# ---------------------------------------------------------------- the synthetic set

def test_synthetic_clips_are_deterministic_and_well_formed():
    for kind in Y.kinds():
        a, b = Y.make(kind, seed=3, seconds=0.5), Y.make(kind, seed=3, seconds=0.5)
        assert a.waveform.dtype == np.float32 and a.waveform.shape == (8000,), kind
        np.testing.assert_array_equal(a.waveform, b.waveform)
        assert np.abs(a.waveform).max() <= 1.0 and np.isfinite(a.waveform).all(), kind
        assert a.family == Y.family(kind) and not a.speech
    assert not Y.make("digital_zero").waveform.any()
    assert not np.array_equal(Y.make("white_-20", 0).waveform, Y.make("white_-20", 1).waveform)
    level = 20 * np.log10(np.sqrt(np.mean(Y.make("pink_-40", 0, 2.0).waveform ** 2)))
    assert abs(level + 40) < 0.1
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        Y.make("violin")


def test_speech_versions_hold_a_word_at_the_stated_snr():
    clip = Y.with_word("white_-40", seed=1, seconds=2.0)
    again = Y.with_word("white_-40", seed=1, seconds=2.0)
    np.testing.assert_array_equal(clip.waveform, again.waveform)
    assert clip.speech and clip.snr_db in Y.SNRS_DB and clip.word.startswith("Actor_")
    noise = Y.make("white_-40", seed=1, seconds=2.0).waveform
    noise = noise * 10 ** ((Y.WORD_DBFS - clip.snr_db) / 20) / np.sqrt(np.mean(noise ** 2))
    word = clip.waveform - noise
    inside = np.flatnonzero(np.abs(word) > 1e-5)  # the word's span (float32 rounding apart)
    word = word[inside[0]:inside[-1] + 1]
    snr = 10 * np.log10(np.mean(word ** 2) / np.mean(noise ** 2))
    assert abs(snr - clip.snr_db) < 0.5
    drawn = {Y.with_word("pink_-40", seed, 1.0).snr_db for seed in range(12)}
    assert drawn == set(Y.SNRS_DB)  # every SNR turns up, whatever the seeds
    assert Y.with_word("pink_-40", 0, 1.0, snr_db=3.0).snr_db == 3.0
    assert Y.with_word("digital_zero", 0, 0.5).waveform.shape == (8000,)
    assert Y.with_word("digital_zero", 0, 0.5).snr_db is None


# ---------------------------------------------------------------- decisions

def test_pure_non_speech_is_no_speech():
    clips = Y.synthetic_set(seeds=(0, 3), seconds=(0.5, 2.0), speech=False)
    found = ratios([c.waveform for c in clips])
    loud = {c.name: round(float(r), 3) for c, r in zip(clips, found)
            if r >= PARAMS.no_speech_threshold}
    assert not loud, f"non-speech judged speech: {loud}"
    assert S.no_speech(found, PARAMS).numpy().all()


def test_demo_speech_is_speech(demo_waves):
    found = dict(zip(demo_waves, ratios(list(demo_waves.values()))))
    quiet = {name: round(r, 3) for name, r in found.items() if r < PARAMS.no_speech_threshold}
    assert not quiet, f"demo speech judged no speech: {quiet}"
    assert np.median(list(found.values())) > 0.2


def test_a_word_in_noise_or_music_is_speech():
    for kind in ("digital_zero", "white_-40", "tone_440", "melody"):
        clip = Y.with_word(kind, seed=0, seconds=2.0, snr_db=20.0)
        assert S.speech_ratio_one(clip.waveform) >= PARAMS.no_speech_threshold, clip.name


def test_frames_and_outputs(demo_waves):
    wave = next(iter(demo_waves.values()))
    out = S.analyse(wave[None], np.array([len(wave)]))
    frames = int(out["num_frames"][0])
    assert frames == 1 + ((len(wave) + 3) // 4) // 80 == int(S.frame_count(len(wave)))
    for key in ("energy_db", "voicing", "f0_hz", "partials", "active", "voiced", "tonal",
                "steady", "speech"):
        assert out[key].shape == (1, frames), key
    speech = out["speech"].numpy()[0]
    assert set(np.unique(speech)) <= {0.0, 1.0}
    assert np.isclose(float(out["speech_ratio"][0]), speech.mean())
    assert (speech <= out["active"].numpy()[0] * out["voiced"].numpy()[0]).all()
    f0 = out["f0_hz"].numpy()[0][speech > 0]
    assert ((f0 >= PARAMS.f0_min - 1) & (f0 <= PARAMS.f0_max + 1)).all()


def test_the_same_alone_or_padded_in_a_batch(demo_waves):
    waves = list(demo_waves.values())[:6]
    waves[1] = waves[1][:20001]  # lengths that are not multiples of the blocks
    waves[2] = waves[2][:333]
    batch, lengths = padded(waves, extra=16000)
    batch[3, lengths[3]:] = 0.5  # what lies past `length` must not count either
    out = S.analyse(batch, lengths)
    for row, wave in enumerate(waves):
        alone = S.analyse(wave[None], np.array([len(wave)]))
        frames = int(out["num_frames"][row])
        assert frames == int(alone["num_frames"][0])
        for key in ("speech", "active", "voiced", "tonal", "steady"):
            np.testing.assert_array_equal(out[key][row, :frames], alone[key][0], err_msg=key)
        for key in ("energy_db", "voicing", "f0_hz"):
            np.testing.assert_allclose(out[key][row, :frames], alone[key][0], atol=1e-4,
                                       err_msg=key)
        assert float(out["speech_ratio"][row]) == float(alone["speech_ratio"][0])
        for key in ("energy_db", "voicing", "f0_hz", "partials", "speech"):
            assert not out[key][row, frames:].numpy().any(), f"{key} past the clip's frames"


@pytest.mark.parametrize("length", [1, 5, 100, 511, 1600, 4000])
def test_short_clips(length, demo_waves):
    wave = next(iter(demo_waves.values()))
    loud = wave[np.argmax(np.abs(wave)) - length // 2:][:length]
    for clip in (loud, np.zeros(length, np.float32)):
        out = S.analyse(clip[None], np.array([length]))
        ratio = float(out["speech_ratio"][0])
        assert 0.0 <= ratio <= 1.0
        assert int(out["num_frames"][0]) == 1 + ((length + 3) // 4) // 80
        assert all(np.isfinite(v.numpy()).all() for v in out.values())
    assert S.speech_ratio_one(np.zeros(length, np.float32)) == 0.0


def test_deterministic(demo_waves):
    batch, lengths = padded(list(demo_waves.values())[:4])
    first = S.speech_ratio(batch, lengths).numpy()
    np.testing.assert_array_equal(first, S.speech_ratio(batch, lengths).numpy())


# ---------------------------------------------------------------- graph, XLA, SavedModel

class _Activity(tf.Module):
    def __init__(self, params):
        super().__init__()
        self.params = params

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def __call__(self, waveform, length):
        ratio = S.speech_ratio(waveform, length, self.params)
        return {"speech_ratio": ratio, "no_speech": S.no_speech(ratio, self.params)}


def test_jit_and_saved_model_round_trip(tmp_path, demo_waves):
    waves = list(demo_waves.values())[:3] + [Y.make("melody", 0, 1.0).waveform]
    batch, lengths = padded(waves)
    eager = S.speech_ratio(batch, lengths).numpy()
    compiled = tf.function(S.speech_ratio, jit_compile=True)(batch, lengths).numpy()
    np.testing.assert_allclose(compiled, eager, atol=1e-3)  # XLA may round differently
    module = _Activity(PARAMS)
    tf.saved_model.save(module, str(tmp_path / "activity"))
    loaded = tf.saved_model.load(str(tmp_path / "activity"))
    out = loaded(tf.constant(batch), tf.constant(lengths))
    np.testing.assert_array_equal(out["speech_ratio"].numpy(), eager)
    np.testing.assert_array_equal(out["no_speech"].numpy(), eager < PARAMS.no_speech_threshold)


# ---------------------------------------------------------------- parameters

def test_params_round_trip_through_json():
    params = PARAMS.replace(no_speech_threshold=0.07, steady_cents=12.0)
    again = S.SpeechActivityParams.from_json(params.to_json())
    assert again == params and json.loads(params.to_json())["version"] == S.PARAMS_VERSION
    assert S.SpeechActivityParams.from_dict(PARAMS.to_dict()) == PARAMS


@pytest.mark.parametrize("change, message", [
    ({"voicing_min": 1.5}, "voicing_min"), ({"f0_min": 20.0}, "f0_min"),
    ({"steady_span": 0}, "steady_span"), ({"snr_db": "6"}, "snr_db must be a number"),
    ({"min_run_frames": 2.5}, "min_run_frames must be an integer"),
    ({"no_speech_threshold": float("nan")}, "no_speech_threshold")])
def test_bad_params_say_what_is_wrong(change, message):
    with pytest.raises(S.ParamsError, match=message):
        PARAMS.replace(**change)


def test_bad_params_json():
    with pytest.raises(S.ParamsError, match="unknown speech activity fields: colour"):
        S.SpeechActivityParams.from_dict({"colour": 1})
    with pytest.raises(S.ParamsError, match="does not parse"):
        S.SpeechActivityParams.from_json("{")
