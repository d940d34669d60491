"""On-graph features against librosa on real clips, and per-clip independence inside batches.

Reference settings (librosa 0.11): n_fft 512, win 400, hop 160, Hann, center=True,
pad_mode='constant', Slaney mel (htk=False, norm='slaney'), power_to_db(amin=1e-10, top_db=80),
MFCC as librosa.feature.mfcc (DCT-II, ortho) of that log-Mel, log energy as
power_to_db(rms(frame_length=512)**2). The spec uses normalization='none', remove_dc=False.
"""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tensorflow as tf

from pipelines.features import extract as F
from pipelines.features.spec import FeatureSpec, logmel_spec, mfcc_spec

SR, N_FFT, WIN, HOP = 16000, 512, 400, 160
LOGMEL = logmel_spec(normalization="none", remove_dc=False)
MFCC = mfcc_spec(normalization="none", remove_dc=False)
PARITY_CLIPS = {"ravdess": 4, "tess": 3, "savee": 3}


def pick(manifest: pd.DataFrame, corpus: str, n: int) -> list[str]:
    """n clips spread evenly over a corpus (its speakers and emotions)."""
    rows = manifest[manifest["corpus"] == corpus].reset_index(drop=True)
    return list(rows["relpath"][np.linspace(0, len(rows) - 1, n).round().astype(int)])


@pytest.fixture(scope="module")
def manifest(corpora) -> pd.DataFrame:
    return pd.read_csv(corpora / "MANIFEST.csv", dtype=str)


@pytest.fixture(scope="module")
def parity_clips(corpora, manifest) -> dict[str, np.ndarray]:
    paths = [p for corpus, n in PARITY_CLIPS.items() for p in pick(manifest, corpus, n)]
    return {p: sf.read(corpora / p, dtype="float32")[0] for p in paths}


def librosa_logmel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, window="hann", center=True,
        pad_mode="constant", power=2.0, n_mels=64, fmin=0.0, fmax=8000.0, htk=False,
        norm="slaney")
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T


def librosa_mfcc(y: np.ndarray) -> np.ndarray:
    cepstra = librosa.feature.mfcc(S=librosa_logmel(y).T, n_mfcc=40, dct_type=2, norm="ortho")
    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP, center=True,
                              pad_mode="constant")
    energy = librosa.power_to_db(rms ** 2, ref=1.0, amin=1e-10, top_db=80.0)
    return np.concatenate([cepstra, energy]).T


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# ---------------------------------------------------------------- constants


@pytest.mark.parametrize("n_mels, fmin, fmax, sr, n_fft", [
    (64, 0.0, 8000.0, 16000, 512), (40, 50.0, None, 16000, 512), (128, 20.0, 7600.0, 16000, 1024),
    (26, 0.0, 4000.0, 8000, 256)])
def test_mel_filterbank_is_librosas(n_mels, fmin, fmax, sr, n_fft):
    ours = F.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                              htk=False, norm="slaney").T
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("win, n_fft", [(400, 512), (512, 512), (200, 256), (401, 512)])
def test_analysis_window_is_librosas(win, n_fft):
    ref = librosa.util.pad_center(librosa.filters.get_window("hann", win, fftbins=True),
                                  size=n_fft)
    np.testing.assert_allclose(F.analysis_window(win, n_fft), ref, atol=1e-7)


# ---------------------------------------------------------------- parity on real clips


def test_parity_clips_cover_the_three_corpora(parity_clips):
    corpora = [p.split("/")[0] for p in parity_clips]
    assert {c: corpora.count(c) for c in set(corpora)} == PARITY_CLIPS


@pytest.mark.parametrize("index", range(sum(PARITY_CLIPS.values())))
def test_logmel_and_mfcc_match_librosa_on_real_clips(parity_clips, index):
    path, y = list(parity_clips.items())[index]
    ref, ours = librosa_logmel(y), F.compute_one(y, LOGMEL)
    assert ours.shape == ref.shape == (LOGMEL.frames(len(y)), 64), path
    assert pearson(ours, ref) >= 0.999, path
    assert np.abs(ours - ref).max() < 0.05, path  # dB; float32 against float64

    ref, ours = librosa_mfcc(y), F.compute_one(y, MFCC)
    assert ours.shape == ref.shape == (MFCC.frames(len(y)), 41), path
    assert pearson(ours, ref) >= 0.999, path
    assert pearson(ours[:, -1], ref[:, -1]) >= 0.999, path  # log energy alone
    for c in range(40):  # and each coefficient, not just the loud c0
        assert pearson(ours[:, c], ref[:, c]) >= 0.999, (path, c)
    assert np.abs(ours - ref).max() < 0.05, path


def test_feature_extractor_layer_matches_compute_one(parity_clips):
    from pipelines.features.extract import FeatureExtractor

    y = next(iter(parity_clips.values()))
    layer = FeatureExtractor(MFCC)
    out = layer(tf.constant(y[None]), tf.constant([len(y)]))
    np.testing.assert_allclose(out[0].numpy(), F.compute_one(y, MFCC), atol=1e-4)
    assert FeatureExtractor.from_config(layer.get_config()).spec == MFCC


def test_model_with_feature_extractor_saves_and_loads(parity_clips, tmp_path):
    """The layer is the front of exported models: a .keras file must load with equal output."""
    import keras

    from pipelines.features.extract import FeatureExtractor

    wave = keras.Input((None,), name="waveform")
    length = keras.Input((), dtype="int32", name="length")
    x = FeatureExtractor(BATCH_SPECS["mfcc-trim30-dc-utterance"], name="features")(wave, length)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model([wave, length], out)
    batch, lengths = padded(list(parity_clips.values())[:3])
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert again.get_layer("features").spec == BATCH_SPECS["mfcc-trim30-dc-utterance"]
    np.testing.assert_allclose(again.predict([batch, lengths], verbose=0),
                               model.predict([batch, lengths], verbose=0), atol=1e-5)


# ---------------------------------------------------------------- batch independence


BATCH_SPECS = {
    "logmel-parity": LOGMEL,
    "mfcc-parity": MFCC,
    "logmel-trim40-dc-utterance": logmel_spec(trim_db=40.0, remove_dc=True,
                                              normalization="utterance"),
    "mfcc-trim30-dc-utterance": mfcc_spec(trim_db=30.0, remove_dc=True,
                                          normalization="utterance"),
}


@pytest.fixture(scope="module")
def batch_clips(corpora) -> list[np.ndarray]:
    """Clips of different lengths: long gated RAVDESS silence, SAVEE DC offset, short TESS."""
    names = ["tess/OAF_Fear/OAF_back_fear.flac", "ravdess/Actor_07/03-01-06-01-02-02-07.flac",
             "savee/JK_su15.flac", "savee/DC_a01.flac",
             "ravdess/Actor_20/03-01-08-02-02-02-20.flac"]
    return [sf.read(corpora / n, dtype="float32")[0] for n in names]


def padded(clips, extra: int = 1234):
    batch = np.zeros((len(clips), max(map(len, clips)) + extra), np.float32)
    for i, clip in enumerate(clips):
        batch[i, :len(clip)] = clip
    return batch, np.array([len(c) for c in clips], np.int32)


@pytest.mark.parametrize("name", BATCH_SPECS)
def test_features_do_not_depend_on_the_batch(batch_clips, name):
    """A clip alone == the same clip zero-padded in a batch of others (in either order).

    Equal up to float32 rounding: the mel matmul may sum in another order for another batch
    shape (observed differences <= 3e-5 on values of tens of dB); frame counts are exact.
    """
    spec = BATCH_SPECS[name]
    alone = []
    for clip in batch_clips:
        feats, frames = F.compute(clip[None], [len(clip)], spec)
        alone.append(feats[0, :int(frames[0])].numpy())
    for order in (list(range(len(batch_clips))), list(reversed(range(len(batch_clips))))):
        batch, lengths = padded([batch_clips[i] for i in order])
        feats, frames = F.compute(batch, lengths, spec)
        feats, frames = feats.numpy(), frames.numpy()
        for row, i in enumerate(order):
            assert frames[row] == len(alone[i]), (name, i)
            np.testing.assert_allclose(feats[row, :frames[row]], alone[i], rtol=1e-5, atol=1e-4,
                                       err_msg=f"{name}: clip {i} in batch row {row}")
            assert not feats[row, frames[row]:].any(), "padded frames must be exact zeros"
    if spec.trim_db is not None:  # the trimming really happened on the gated RAVDESS clip
        assert len(alone[1]) < spec.frames(len(batch_clips[1])) - 50
    # compute_many batches by length and hands each clip back in input order
    for i, feats in enumerate(F.compute_many(batch_clips, spec, batch_size=2)):
        np.testing.assert_allclose(feats, alone[i], rtol=1e-5, atol=1e-4,
                                   err_msg=f"{name}: compute_many, clip {i}")


@pytest.mark.parametrize("name", BATCH_SPECS)
def test_padded_frames_are_exact_zeros(batch_clips, name):
    spec = BATCH_SPECS[name]
    batch, lengths = padded(batch_clips, extra=16000)
    feats, frames = F.compute(batch, lengths, spec)
    feats, frames = feats.numpy(), frames.numpy()
    assert feats.shape == (len(batch_clips), spec.frames(batch.shape[1]), spec.channels)
    for row in range(len(batch_clips)):
        assert np.all(feats[row, frames[row]:] == 0.0)
        assert np.count_nonzero(feats[row, :frames[row]].any(axis=1)) == frames[row]
    assert np.isfinite(feats).all()


def test_compiled_batches_match_eager(batch_clips):
    spec = BATCH_SPECS["mfcc-trim30-dc-utterance"]
    fn = tf.function(lambda w, n: F.compute(w, n, spec), input_signature=[
        tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
    batch, lengths = padded(batch_clips)
    eager, graph = F.compute(batch, lengths, spec), fn(batch, lengths)
    np.testing.assert_array_equal(eager[1].numpy(), graph[1].numpy())
    np.testing.assert_allclose(eager[0].numpy(), graph[0].numpy(), rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- trimming


@pytest.fixture(scope="module")
def gated_ravdess(corpora, manifest) -> dict[str, np.ndarray]:
    """8 RAVDESS clips, from 8 actors, that start with more than 0.1 s of digital silence."""
    clips, actors = {}, set()
    for path in manifest.loc[manifest["corpus"] == "ravdess", "relpath"][::7]:
        actor = path.split("/")[1]
        if actor in actors:
            continue
        y = sf.read(corpora / path, dtype="float32")[0]
        if np.argmax(y != 0) > 0.1 * SR:
            clips[path] = y
            actors.add(actor)
        if len(clips) == 8:
            break
    assert len(clips) == 8
    return clips


@pytest.mark.parametrize("trim_db", [30.0, 40.0, 60.0])
def test_trim_matches_librosa_on_gated_ravdess_clips(gated_ravdess, trim_db):
    spec = FeatureSpec(trim_db=trim_db, remove_dc=False)
    for path, y in gated_ravdess.items():
        _, (start, end) = librosa.effects.trim(y, top_db=trim_db, frame_length=N_FFT,
                                               hop_length=HOP)
        ours_start, ours_end = F.trim_bounds(tf.constant(y[None]), tf.constant([len(y)]), spec)
        ours_start, ours_end = int(ours_start[0]), int(ours_end[0])
        assert abs(ours_start - start) <= HOP and abs(ours_end - end) <= HOP, \
            (path, (ours_start, ours_end), (start, end))
        leading_zeros = int(np.argmax(y != 0))
        assert ours_start >= leading_zeros - N_FFT, path  # the gate's silence is gone
        # and preprocess() hands on exactly that part of the clip, moved to the front
        wave, length = F.preprocess(y[None], [len(y)], spec)
        assert int(length[0]) == ours_end - ours_start
        np.testing.assert_array_equal(wave[0, :int(length[0])].numpy(), y[ours_start:ours_end])
        assert not wave[0, int(length[0]):].numpy().any()


def test_trim_keeps_a_silent_clip_whole():
    spec = FeatureSpec(trim_db=40.0)
    wave, length = F.preprocess(np.zeros((1, 8000), np.float32), [8000], spec)
    assert int(length[0]) == 8000
    feats = F.compute_one(np.zeros(8000, np.float32), spec)
    assert np.isfinite(feats).all()


def test_remove_dc_takes_the_mean_of_the_clip_only(corpora):
    y = sf.read(corpora / "savee/DC_a01.flac", dtype="float32")[0]
    assert y.mean() > 0.01  # the SAVEE offset the data card describes
    batch, lengths = padded([y, y[:16000]], extra=5000)
    wave, length = F.preprocess(batch, lengths, FeatureSpec(remove_dc=True))
    wave = wave.numpy()
    np.testing.assert_allclose(wave[0, :len(y)], y - y.mean(dtype=np.float64), atol=1e-6)
    np.testing.assert_allclose(wave[1, :16000], y[:16000] - y[:16000].mean(dtype=np.float64),
                               atol=1e-6)
    assert not wave[0, len(y):].any() and not wave[1, 16000:].any()
