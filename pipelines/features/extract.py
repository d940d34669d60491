"""On-graph log-Mel and MFCC features from a FeatureSpec, with tf.signal.

Every function takes a batch of zero-padded waveforms [batch, samples] and their lengths, and
treats each clip on its own: frames are centred with zero padding (as librosa, center=True), so a
clip's frames are the same alone or padded in a batch; statistics (DC, trimming, top_db clamp,
normalisation) use only the clip's own samples/frames; padded frames come out as exact zeros.
The values match librosa computed with the same settings (tested on real clips).
Masks gain their channel axis with tf.expand_dims, not x[:, :, None]: the same values, but
TFLite (zoo.lite) cannot lower a new-axis slice when batch and time are both unknown.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from pipelines.features.spec import FeatureSpec

_EPS = 1e-5


# ---------------------------------------------------------------- constants (numpy, cached)

def _hz_to_mel(hz):
    """Slaney mel scale (librosa's default, htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    f_sp * mel)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                   fmax: float | None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] Slaney-normalised triangular filters (librosa.filters.mel)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    return weights.T.astype(np.float32)


@functools.lru_cache(maxsize=16)
def analysis_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of win_length, centred in n_fft samples (librosa's convention)."""
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left)).astype(np.float32)


def mel_frequencies(spec: FeatureSpec) -> np.ndarray:
    """Centre frequency in Hz of each mel band (for plot axes)."""
    fmax = spec.sample_rate / 2 if spec.fmax is None else spec.fmax
    return _mel_to_hz(np.linspace(_hz_to_mel(spec.fmin), _hz_to_mel(fmax), spec.n_mels + 2))[1:-1]


# ---------------------------------------------------------------- masks and framing

def frame_count(length, spec: FeatureSpec):
    """Frames of a clip of `length` samples: 1 + length // hop (centred framing)."""
    return 1 + tf.cast(length, tf.int32) // spec.hop_length


def sample_mask(waveform, length):
    return tf.sequence_mask(length, tf.shape(waveform)[1], dtype=waveform.dtype)


def frame_mask(num_frames, total_frames, dtype=tf.float32):
    return tf.sequence_mask(num_frames, total_frames, dtype=dtype)


def frames(waveform, spec: FeatureSpec):
    """[batch, T, n_fft] centred frames, T = 1 + samples // hop, zero padded at both ends."""
    pad = spec.n_fft // 2
    padded = tf.pad(waveform, [[0, 0], [pad, pad]])
    return tf.signal.frame(padded, spec.n_fft, spec.hop_length, pad_end=False)


def whisper_frames(waveform, spec: FeatureSpec):
    """Frames as Whisper's front end makes them: centred, the left edge reflected (numpy's
    'reflect', as WhisperFeatureExtractor's STFT) and zeros past the end (Whisper pads the
    audio with zeros to 30 s), so the frames are those of the 30 s input, cut at the clip."""
    pad = spec.n_fft // 2
    left = tf.reverse(waveform[:, 1:pad + 1], axis=[1])
    left = tf.pad(left, [[0, 0], [pad - tf.shape(left)[1], 0]])
    padded = tf.concat([left, waveform, tf.zeros_like(waveform[:, :pad])], axis=1)
    return tf.signal.frame(padded, spec.n_fft, spec.hop_length, pad_end=False)


def power_spectrogram(framed, spec: FeatureSpec):
    """|STFT|^2 of centred frames [batch, T, n_fft] -> [batch, T, n_fft // 2 + 1]."""
    window = tf.constant(analysis_window(spec.win_length, spec.n_fft))
    spectrum = tf.signal.rfft(framed * window)
    return tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2


def _masked_max(x, mask, axes):
    """Max of x over `axes` counting only positions where mask (broadcast) is 1."""
    return tf.reduce_max(tf.where(mask > 0, x, tf.fill(tf.shape(x), x.dtype.min)), axis=axes,
                         keepdims=True)


def _to_db(power, mask, spec: FeatureSpec, axes):
    db = 10.0 * tf.math.log(tf.maximum(power, spec.log_floor)) / np.log(10.0)
    if spec.top_db is not None:
        db = tf.maximum(db, _masked_max(db, mask, axes) - spec.top_db)
    return db


# ---------------------------------------------------------------- preprocessing

def remove_dc(waveform, length):
    mask = sample_mask(waveform, length)
    count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    mean = tf.reduce_sum(waveform * mask, axis=1, keepdims=True) / count
    return (waveform - mean) * mask


def trim_bounds(waveform, length, spec: FeatureSpec):
    """Per clip [start, end) in samples of the non-silent part (librosa.effects.trim logic)."""
    n_frames = frame_count(length, spec)
    total = tf.shape(waveform)[1] // spec.hop_length + 1
    fmask = frame_mask(n_frames, total)
    energy = tf.reduce_mean(tf.square(frames(waveform, spec)), axis=-1)
    db = 10.0 * tf.math.log(tf.maximum(energy, 1e-10)) / np.log(10.0)
    threshold = _masked_max(db, fmask[:, :], axes=[1]) - spec.trim_db
    loud = tf.logical_and(db > threshold, fmask > 0)
    any_loud = tf.reduce_any(loud, axis=1)
    index = tf.range(total)[None, :]
    first = tf.reduce_min(tf.where(loud, index, total), axis=1)
    last = tf.reduce_max(tf.where(loud, index, -1), axis=1)
    start = tf.where(any_loud, first * spec.hop_length, 0)
    end = tf.where(any_loud, tf.minimum(length, (last + 1) * spec.hop_length), length)
    return start, end


def shift_clips(waveform, start, new_length):
    """Move each clip's [start, start + new_length) to the front; zero the rest."""
    n = tf.shape(waveform)[1]
    index = tf.minimum(start[:, None] + tf.range(n)[None, :], n - 1)
    moved = tf.gather(waveform, index, batch_dims=1)
    return moved * sample_mask(moved, new_length)


def preprocess(waveform, length, spec: FeatureSpec):
    """DC removal and silence trimming as the spec says; returns (waveform, length)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.cast(length, tf.int32)
    waveform = waveform * sample_mask(waveform, length)
    if spec.remove_dc:
        waveform = remove_dc(waveform, length)
    if spec.trim_db is not None:
        start, end = trim_bounds(waveform, length, spec)
        length = end - start
        waveform = shift_clips(waveform, start, length)
    return waveform, length


# ---------------------------------------------------------------- features

def log_mel(framed, length, spec: FeatureSpec):
    """Log-Mel in dB from centred frames, [batch, T, n_mels]; top_db clamp per clip."""
    power = power_spectrogram(framed, spec)
    mel = tf.matmul(power, tf.constant(mel_filterbank(
        spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)))
    mask = tf.expand_dims(frame_mask(frame_count(length, spec), tf.shape(mel)[1]), -1)
    return _to_db(mel, mask, spec, axes=[1, 2])


def whisper_log_mel(framed, length, spec: FeatureSpec):
    """Whisper's log-Mel [batch, T, n_mels]: log10 of the mel power (floored at 1e-10),
    clamped at the clip's maximum - 8 (80 dB), then (x + 4) / 4."""
    power = power_spectrogram(framed, spec)
    mel = tf.matmul(power, tf.constant(mel_filterbank(
        spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)))
    mask = tf.expand_dims(frame_mask(frame_count(length, spec), tf.shape(mel)[1]), -1)
    log = tf.math.log(tf.maximum(mel, spec.log_floor)) / np.log(10.0)
    log = tf.maximum(log, _masked_max(log, mask, axes=[1, 2]) - spec.top_db / 10.0)
    return (log + 4.0) / 4.0


def log_energy(framed, length, spec: FeatureSpec):
    """Frame log energy in dB, 10*log10(mean(frame^2)) over n_fft samples, [batch, T, 1]."""
    energy = tf.reduce_mean(tf.square(framed), axis=-1, keepdims=True)
    mask = tf.expand_dims(frame_mask(frame_count(length, spec), tf.shape(energy)[1]), -1)
    return _to_db(energy, mask, spec, axes=[1, 2])


def dct_ortho(x):
    """Orthonormal DCT-II over the last axis (zoo.lite swaps in the same transform as a matrix
    product for TFLite, which cannot slice the complex FFT that tf.signal.dct takes)."""
    return tf.signal.dct(x, type=2, norm="ortho")


def mfcc(framed, length, spec: FeatureSpec):
    """n_mfcc DCT-II (orthonormal) coefficients of the dB log-Mel, plus log energy."""
    cepstra = dct_ortho(log_mel(framed, length, spec))
    return tf.concat([cepstra[..., :spec.n_mfcc], log_energy(framed, length, spec)], axis=-1)


def normalize(features, num_frames, stats=None):
    """Zero mean, unit variance per channel; padded frames -> 0.

    stats None: each clip's own frames (per-utterance). stats (mean, std), each [batch, C]:
    statistics given from outside, e.g. over all clips of the clip's speaker.
    """
    mask = tf.expand_dims(frame_mask(num_frames, tf.shape(features)[1], features.dtype), -1)
    if stats is None:
        count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        mean = tf.reduce_sum(features * mask, axis=1, keepdims=True) / count
        var = tf.reduce_sum(tf.square(features - mean) * mask, axis=1, keepdims=True) / count
        scale = tf.math.rsqrt(var + _EPS)
    else:
        mean = tf.convert_to_tensor(stats[0], features.dtype)[:, None, :]
        std = tf.convert_to_tensor(stats[1], features.dtype)[:, None, :]
        scale = tf.math.rsqrt(tf.square(std) + _EPS)
    return (features - mean) * scale * mask


def compute(waveform, length, spec: FeatureSpec, preprocessed: bool = False, stats=None):
    """Waveforms [batch, samples] + lengths [batch] -> (features [batch, T, C], frames [batch]).

    Padded frames are exact zeros. `preprocessed=True` skips DC removal and trimming (for
    callers that already ran `preprocess`, e.g. before random cropping). `stats` = (mean, std)
    per clip, each [batch, C], normalises with given statistics (over the clip's speaker)
    instead of the clip's own; it applies whenever spec.normalization is not 'none'.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.cast(length, tf.int32)
    if not preprocessed:
        waveform, length = preprocess(waveform, length, spec)
    if spec.kind == "whisper_logmel":
        feats = whisper_log_mel(whisper_frames(waveform, spec), length, spec)
    else:
        framed = frames(waveform, spec)
        feats = log_mel(framed, length, spec) if spec.kind == "logmel" else \
            mfcc(framed, length, spec)
    num_frames = frame_count(length, spec)
    mask = tf.expand_dims(frame_mask(num_frames, tf.shape(feats)[1]), -1)
    if spec.normalization != "none":
        feats = normalize(feats, num_frames, stats)
    return feats * mask, num_frames


def compute_many(waves, spec: FeatureSpec, batch_size: int = 32) -> list[np.ndarray]:
    """Features of many 1-D clips as numpy [frames, C] each (valid frames only), in input
    order. Clips go through `compute` in batches of similar length (little padding); a clip's
    features do not depend on its batch."""
    out: list = [None] * len(waves)
    order = np.argsort([len(w) for w in waves], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        length = np.array([len(waves[i]) for i in idx], np.int32)
        batch = np.zeros((len(idx), length.max()), np.float32)
        for row, i in enumerate(idx):
            batch[row, :length[row]] = waves[i]
        feats, frames = compute(batch, length, spec)
        feats, frames = feats.numpy(), frames.numpy()
        for row, i in enumerate(idx):
            out[i] = feats[row, :frames[row]]
    return out


def compute_one(waveform: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of one clip as numpy [T, C] (for notebooks, plots and tests)."""
    wave = tf.constant(np.asarray(waveform, np.float32)[None, :])
    feats, _ = compute(wave, tf.constant([wave.shape[1]]), spec)
    return feats[0].numpy()


@keras.saving.register_keras_serializable(package="zoo")
class FeatureExtractor(keras.layers.Layer):
    """Keras layer: (waveform [batch, samples], length [batch]) -> features [batch, T, C].

    The front of every exported model, so serving computes exactly the training features.
    """

    def __init__(self, spec: FeatureSpec | dict, **kwargs):
        kwargs.pop("trainable", None)  # get_config() carries it; the layer has no weights anyway
        super().__init__(trainable=False, **kwargs)
        self.spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(spec)

    def call(self, waveform, length=None):
        if length is None:
            length = tf.fill([tf.shape(waveform)[0]], tf.shape(waveform)[1])
        features, _ = compute(waveform, length, self.spec)
        return features

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, self.spec.channels)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec.to_dict()}
