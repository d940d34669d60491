"""Training-time augmentation inside tf.data: per clip on the waveform (crop, speed, gain,
noise) and per batch on features (SpecAugment time/frequency masks from tensorflow-io).
Never used in evaluation."""

from __future__ import annotations

import dataclasses

import tensorflow as tf



@dataclasses.dataclass(frozen=True)
class Augment:
    """What to randomise per clip while training.

    speed: range of speed factors (resampling by linear interpolation; 1.1 = 10% faster,
        higher pitch), or None.
    gain_db: random gain in [-gain_db, +gain_db] dB.
    noise_snr_db: white noise at an SNR drawn from this range (dB), applied with noise_prob.
    time_masks / time_mask_frames: SpecAugment time masks (tfio.audio.time_mask), how many and
        the maximum width in frames. freq_masks / freq_mask_bins: the same across channels.
    """

    speed: tuple[float, float] | None = (0.9, 1.1)
    gain_db: float = 6.0
    noise_snr_db: tuple[float, float] | None = (10.0, 40.0)
    noise_prob: float = 0.5
    time_masks: int = 2
    time_mask_frames: int = 20
    freq_masks: int = 2
    freq_mask_bins: int = 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def none(cls) -> "Augment":
        return cls(speed=None, gain_db=0.0, noise_snr_db=None, time_masks=0, freq_masks=0)


def speed_perturb(wave, low: float, high: float):
    """Resample one clip [n] by a random factor in [low, high] (linear interpolation)."""
    n = tf.shape(wave)[0]
    factor = tf.random.uniform([], low, high)
    new_n = tf.maximum(tf.cast(tf.floor(tf.cast(n, tf.float32) / factor), tf.int32), 1)
    pos = tf.range(new_n, dtype=tf.float32) * factor
    left = tf.minimum(tf.cast(tf.floor(pos), tf.int32), n - 1)
    right = tf.minimum(left + 1, n - 1)
    a, b = tf.gather(wave, left), tf.gather(wave, right)
    return a + (b - a) * (pos - tf.floor(pos))


def random_gain(wave, gain_db: float):
    return wave * tf.pow(10.0, tf.random.uniform([], -gain_db, gain_db) / 20.0)


def add_noise(wave, snr_db: tuple[float, float], prob: float):
    """White noise (uniform, unit variance before scaling) at a random SNR to the clip's power."""
    power = tf.reduce_mean(tf.square(wave))
    snr = tf.random.uniform([], snr_db[0], snr_db[1])
    scale = tf.sqrt(power / tf.pow(10.0, snr / 10.0) * 3.0)
    noise = tf.random.uniform(tf.shape(wave), -1.0, 1.0) * scale
    return tf.cond(tf.random.uniform([]) < prob, lambda: wave + noise, lambda: wave)


def random_crop(wave, crop: int):
    """A random window of at most `crop` samples of one clip [n]."""
    room = tf.maximum(tf.shape(wave)[0] - crop, 0)
    start = tf.random.uniform([], 0, room + 1, dtype=tf.int32)
    return wave[start:start + crop]


def augment_clip(wave, augment: "Augment", crop: int | None):
    """Crop (with room for the speed change), perturb speed, crop exactly, gain, noise."""
    if crop is not None:
        margin = augment.speed[1] if augment.speed is not None else 1.0
        wave = random_crop(wave, int(crop * margin) + 1)
    if augment.speed is not None:
        wave = speed_perturb(wave, *augment.speed)
    if crop is not None:
        wave = random_crop(wave, crop)
    if augment.gain_db:
        wave = random_gain(wave, augment.gain_db)
    if augment.noise_snr_db is not None and augment.noise_prob > 0:
        wave = add_noise(wave, augment.noise_snr_db, augment.noise_prob)
    return wave


def spec_augment(features, augment: Augment, audio):
    """tfio time and frequency masks, independently per clip of the batch.

    `audio` is the tensorflow_io.audio module (pipelines.common.tfenv.tfio_audio()), passed in so it
    is imported once, outside any traced function.
    """
    if augment.time_masks == 0 and augment.freq_masks == 0:
        return features

    def one(x):
        for _ in range(augment.time_masks):
            x = audio.time_mask(x, param=augment.time_mask_frames)
        for _ in range(augment.freq_masks):
            x = audio.freq_mask(x, param=augment.freq_mask_bins)
        return x

    return tf.map_fn(one, features, fn_output_signature=features.dtype)
