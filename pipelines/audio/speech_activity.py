"""Speech activity on the TF graph: how much of a clip is voiced human speech.

    ratio = speech_ratio(waveform, length, params)        # [batch] float32 in [0, 1]
    no_speech = ratio < params.no_speech_threshold         # the serving status 'no_speech'
    frames = analyse(waveform, length, params)             # per-frame cues and decision (plots)

Like pipelines.features.extract, every function takes a batch of zero-padded waveforms [batch, samples]
(16 kHz, float32, full scale 1) and lengths [batch], and treats each clip on its own: a clip's
answer is the same alone or padded in any batch, padded frames are exact zeros, and nothing
leaves the graph (tf.function / SavedModel / TF Serving friendly, deterministic).

What the graph computes, per clip (all of it cheap: it runs in every serving request):

1. Frames: the 16 kHz samples are read once, in blocks of 4: each block's mean is the 4 kHz
   signal the pitch analysis uses (a 4-tap box low-pass: -0.9 dB at 1 kHz, -3 dB at 1.8 kHz,
   zeros at 4 and 8 kHz; what aliases from above 2 kHz is weak in voiced speech), and its sum
   of squares gives the full-band energy. Frames of 40 ms (160 samples at 4 kHz) every 20 ms,
   centred (zero padding at both ends), 1 + ceil(length / 4) // 80 of them; frame t is
   centred at t * 20 ms.
2. Energy: each frame's full-band mean square about its own mean (so DC offsets and steps
   carry none), in dB re full scale (a full-scale sine is -3 dB). The clip's noise floor is
   the `floor_percentile` percentile of its frame energies. A frame is *active* when its
   energy is above both `abs_floor_db` (digital silence, dither and very low-level noise are
   never speech, whatever the clip's floor) and the clip's floor + `snr_db`. A stationary
   sound (noise, hum, a steady or swept tone at constant level, a clipped tone, DC) sits at
   its own floor, so it has no active frames.
3. Voicing: each frame's own mean is removed, a Hann window applied, and its normalised
   autocorrelation taken through a 256-point FFT, divided by the window's own autocorrelation
   (Boersma 1993). Its highest peak at pitch lags f0_min..f0_max Hz is the *voicing*; the
   pitch is the shortest lag whose peak is within `octave_tolerance` of the highest, refined
   by parabolic interpolation. A frame is *voiced* when the voicing reaches `voicing_min`:
   noise, clicks and fricatives do not.
4. Tonal: a voiced frame whose 0-1.8 kHz spectrum has a single peak within `tonal_db` of its
   strongest is one partial, a pure or gliding tone (beeps, whistles, chirps), not a voice,
   whose harmonics make several.
5. Steady: a voice's pitch never stands still; a synthesised or played note's does. A voiced
   frame with at least `steady_neighbours` voiced frames within `steady_span` frames either
   side whose pitch is within `steady_cents` of its own is a held note: chords, melodies,
   tones with an envelope. (The pitch is a rough one, with octave errors on speech; on notes
   it is exact, which is what this test needs.)
6. Speech frame = active, voiced, not tonal and not steady, kept only in runs of at least
   `min_run_frames` frames (a morphological opening: isolated frames of a click or a note's
   onset go). speech_ratio = speech frames / the clip's frames, the share of the clip that is
   voiced speech: unvoiced consonants and pauses do not count, so a sentence gives about
   0.2-0.6 and one short word in a 4 s clip about 0.05-0.1.

In an export: call speech_ratio on the request's waveform and length as they arrive (before
the features' trimming; any length >= 0 works, clips shorter than a frame give 0), inside the
same request checks, and compare with params.no_speech_threshold; the graph needs only the
params (Python values baked in as constants), so store params.to_json() with the export to say
what it computed. No variables, no assets.

The parameters are a frozen dataclass stored as JSON with an export (SpeechActivityParams,
`to_dict` / `from_dict`); their values, and the threshold's trade-off measured on the corpora
and a synthetic non-speech set (pipelines.audio.synthetic), are in docs/reliability.md and
bench/results/speech_activity.json (bench/speech_activity.py). What the cues cannot tell apart:
singing is voice, so it counts as speech; a real instrument played with vibrato, or a
recording of a voice (TV, radio), looks like speech too.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from pipelines.audio.speech_params import (  # noqa: F401 - part of this module's API
    _TINY, CUTOFF_HZ, DECIMATION, DEFAULT_PARAMS, FFT, FRAME, HOP, PARAMS_VERSION, SAMPLE_RATE,
    ParamsError, SpeechActivityParams)


# ---------------------------------------------------------------- constants (numpy, cached)

@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """Periodic Hann window of FRAME samples."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _autocorrelation_matrix(lag_lo: int, lag_hi: int) -> np.ndarray:
    """[FFT // 2 + 1, 1 + lags] the inverse real DFT of a power spectrum at lag 0 and lags
    lag_lo - 1 .. lag_hi + 1 (what irfft gives there, as one small matmul)."""
    lags = np.r_[0, np.arange(lag_lo - 1, lag_hi + 2)]
    k = np.arange(FFT // 2 + 1)
    weight = np.where((k == 0) | (k == FFT // 2), 1.0, 2.0) / FFT
    return (weight[:, None] * np.cos(2 * np.pi * np.outer(k, lags) / FFT)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window_autocorrelation() -> np.ndarray:
    """[FFT] the window's autocorrelation, normalised to 1 at lag 0 (floored: never 0)."""
    w = _window().astype(np.float64)
    full = np.correlate(w, w, mode="full")[FRAME - 1:]
    out = np.zeros(FFT)
    out[:FRAME] = full / full[0]
    return np.maximum(out, 1e-3).astype(np.float32)


# ---------------------------------------------------------------- the graph
#
# Framing is done with reshapes (a 40 ms frame is two 20 ms blocks) and shifted slices rather
# than tf.signal.frame: the graph runs in every serving request, where the number of ops, not
# the arithmetic, is most of the cost of a small batch.

def frame_count(length):
    """Analysis frames of a clip of `length` samples at 16 kHz: 1 + ceil(length / 4) // 80."""
    return 1 + ((tf.cast(length, tf.int32) + DECIMATION - 1) // DECIMATION) // HOP


def _front(waveform, length, frames):
    """(frames of the 4 kHz signal [batch, frames, FRAME], full-band (mean, mean square) over
    each frame's 40 ms [batch, frames, 2]): the clip, zeroed past `length`, in 20 ms blocks
    of 320 samples; a 4 kHz sample is the mean of 4 (a box low-pass), a frame two blocks.
    Frame t is centred on 16 kHz sample 320 t, zero padding at both ends. Only innermost axes
    are reduced, so a clip's values do not depend on the shape of its batch."""
    rows, samples = tf.shape(waveform)[0], tf.shape(waveform)[1]
    block = HOP * DECIMATION
    x = waveform * tf.sequence_mask(length, samples, dtype=tf.float32)
    x = tf.pad(x, [[0, 0], [block, frames * block - samples]])
    box = tf.constant(np.full((DECIMATION, 1, 1), 1.0 / DECIMATION, np.float32))
    low = tf.nn.conv1d(x[:, :, None], box, DECIMATION, "VALID")  # (a conv is the fastest
    low = tf.reshape(low, [rows, frames + 1, HOP])  # way TF has to sum 4 neighbours)
    framed = tf.concat([low[:, :-1], low[:, 1:]], axis=-1)
    squares = tf.reduce_sum(tf.square(tf.reshape(x, [rows, frames + 1, block])), -1)
    halves = tf.stack([tf.reduce_sum(low, -1) * DECIMATION, squares], -1)
    return framed, (halves[:, :-1] + halves[:, 1:]) / float(FRAME * DECIMATION)


def _neighbours(x, span: int):
    """x [batch, T, C] -> [batch, T, 2 span + 1, C]: frames t - span .. t + span (zeros past
    the ends), one gather."""
    padded = tf.pad(x, [[0, 0], [span, span], [0, 0]])
    index = tf.range(tf.shape(x)[1])[:, None] + tf.range(2 * span + 1)[None, :]
    return tf.gather(padded, index, axis=1)


def _runs_at_least(flags, width: int):
    """1 where a frame lies inside a run of >= `width` consecutive 1s of flags [batch, T]
    (a morphological opening by pooling; frames past the ends count as 0)."""
    if width == 1:
        return flags
    padded = tf.pad(flags, [[0, 0], [width - 1, width - 1]])[:, :, None]
    ends = -tf.nn.max_pool1d(-padded, width, 1, "VALID")  # a run of `width` ends here
    return tf.nn.max_pool1d(ends, width, 1, "VALID")[:, :, 0]


def _percentile(values, mask, q: float):
    """Per row the q-th percentile (nearest rank) of values [batch, T] where mask is 1."""
    count = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    ordered = tf.sort(tf.where(mask > 0, values, tf.fill(tf.shape(values), np.inf)), axis=1)
    rank = tf.cast(tf.round(q / 100.0 * tf.cast(tf.maximum(count - 1, 0), tf.float32)),
                   tf.int32)
    return tf.gather(ordered, rank[:, None], batch_dims=1)[:, 0]


def _db(power):
    return 10.0 * tf.math.log(power + _TINY) / math.log(10.0)


def _pitch(autocorr, params: SpeechActivityParams):
    """(voicing, lag in samples at 4 kHz) per frame from the windowed frames' autocorrelation
    [batch, T, lags] at lag 0 and lags lag_lo - 1 .. lag_hi + 1 (_autocorrelation_matrix):
    the normalised peak (Boersma 1993) and its lag, see the module docstring."""
    lag_lo, lag_hi = params.lag_range
    energy = autocorr[:, :, :1]
    r = autocorr[:, :, 1:] / tf.constant(_window_autocorrelation()[lag_lo - 1:lag_hi + 2])
    r = tf.where(energy > _TINY, r / tf.maximum(energy, _TINY), tf.zeros_like(r))
    centre = r[:, :, 1:-1]
    peak = tf.logical_and(centre > r[:, :, :-2], centre >= r[:, :, 2:])
    peak_value = tf.where(peak, centre, tf.fill(tf.shape(centre), -1.0))
    # the window correction can lift long lags a little over 1: compare with at most 1
    best = tf.minimum(tf.reduce_max(peak_value, axis=-1, keepdims=True), 1.0)
    candidate = tf.logical_and(peak, peak_value >= best - params.octave_tolerance)
    count = lag_hi - lag_lo + 1
    index = tf.reduce_min(tf.where(candidate, tf.range(count), count), axis=-1)
    index = tf.minimum(index, count - 1)  # no peak: any lag, voicing stays low
    around = tf.gather(r, index[:, :, None] + tf.range(3), batch_dims=2)  # lag - 1, lag, + 1
    r_minus, r0, r_plus = around[..., 0], around[..., 1], around[..., 2]
    curvature = tf.minimum(r_minus - 2.0 * r0 + r_plus, -1e-6)
    shift = tf.clip_by_value(0.5 * (r_minus - r_plus) / curvature, -0.5, 0.5)
    voicing = tf.clip_by_value(r0 - 0.25 * (r_minus - r_plus) * shift, -1.0, 1.0)
    return voicing, tf.cast(index + lag_lo, tf.float32) + shift


def _partials(power, params: SpeechActivityParams):
    """Spectral peaks (local maxima) within tonal_db of the frame's strongest, below the
    cut-off: 1 for a pure or gliding tone, several for a voice's harmonics."""
    top_bin = int(CUTOFF_HZ / (SAMPLE_RATE / DECIMATION / FFT))
    power = power[:, :, :top_bin + 1]
    top = tf.reduce_max(power, axis=-1, keepdims=True)
    middle = power[:, :, 1:-1]
    peak = tf.logical_and(middle > power[:, :, :-2], middle >= power[:, :, 2:])
    strong = middle > top * 10.0 ** (-params.tonal_db / 10.0)
    return tf.reduce_sum(tf.cast(tf.logical_and(peak, strong), tf.float32), axis=-1)


def _steady(lag, voiced, params: SpeechActivityParams):
    """1 where a voiced frame has >= steady_neighbours voiced frames within steady_span frames
    either side at the same pitch (+- steady_cents): a held note, not a voice."""
    cents = tf.math.log(lag) * (1200.0 / math.log(2.0))
    span = params.steady_span
    near = _neighbours(tf.stack([cents, voiced], -1), span)  # [batch, T, 2 span + 1, 2]
    close = tf.cast(tf.abs(near[..., 0] - cents[:, :, None]) < params.steady_cents, tf.float32)
    others = tf.constant(np.r_[np.ones(span), 0.0, np.ones(span)].astype(np.float32))
    matches = tf.reduce_sum(close * near[..., 1] * others, axis=-1)
    return tf.cast(matches >= params.steady_neighbours, tf.float32) * voiced


def analyse(waveform, length, params: SpeechActivityParams = DEFAULT_PARAMS) -> dict:
    """Per-frame cues and decisions; every [batch, T] tensor is exact zeros past a clip's
    frames. Frame t is centred at t * params.frame_seconds seconds.

    Returns {'energy_db', 'voicing', 'f0_hz' (a rough pitch, 0 where not voiced: octave
    errors are common, it is a cue, not a pitch tracker), 'partials', and the 0/1 decisions
    'active', 'voiced', 'tonal', 'steady', 'speech': [batch, T]; 'floor_db', 'threshold_db',
    'speech_ratio': [batch]; 'num_frames': int32 [batch]}.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    length = tf.cast(length, tf.int32)
    with tf.name_scope("front"):
        num_frames = frame_count(length)
        total = frame_count(tf.shape(waveform)[1])
        valid = tf.sequence_mask(num_frames, total, dtype=tf.float32)
        framed, moments = _front(waveform, length, total)
    with tf.name_scope("energy"):
        energy_db = _db(tf.maximum(moments[..., 1] - tf.square(moments[..., 0]), 0.0)) * valid
        floor_db = _percentile(energy_db, valid, params.floor_percentile)
        threshold_db = tf.maximum(floor_db + params.snr_db, params.abs_floor_db)
        active = tf.cast(energy_db > threshold_db[:, None], tf.float32) * valid
    with tf.name_scope("spectrum"):
        framed = framed - tf.reduce_mean(framed, axis=-1, keepdims=True)
        spectrum = tf.signal.rfft(framed * tf.constant(_window()), fft_length=[FFT])
        power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
        autocorr = tf.matmul(power, tf.constant(_autocorrelation_matrix(*params.lag_range)))
    with tf.name_scope("pitch"):
        voicing, lag = _pitch(autocorr, params)
        voicing = voicing * valid
        voiced = tf.cast(voicing >= params.voicing_min, tf.float32) * valid
    with tf.name_scope("tonal"):
        partials = _partials(power, params) * valid
        tonal = tf.cast(partials < 2, tf.float32) * voiced
    with tf.name_scope("steady"):
        steady = _steady(lag, voiced, params)
    with tf.name_scope("decision"):
        speech = active * voiced * (1.0 - tonal) * (1.0 - steady)
        speech = _runs_at_least(speech, params.min_run_frames) * valid
        ratio = tf.reduce_sum(speech, axis=1) / tf.cast(num_frames, tf.float32)
    return {"energy_db": energy_db, "voicing": voicing,
            "f0_hz": SAMPLE_RATE / DECIMATION / lag * voiced, "partials": partials,
            "active": active, "voiced": voiced, "tonal": tonal, "steady": steady,
            "speech": speech, "floor_db": floor_db, "threshold_db": threshold_db,
            "speech_ratio": ratio, "num_frames": num_frames}


def speech_ratio(waveform, length, params: SpeechActivityParams = DEFAULT_PARAMS):
    """[batch] float32 in [0, 1]: the share of each clip's frames judged voiced speech."""
    return analyse(waveform, length, params)["speech_ratio"]


def speech_frames(waveform, length, params: SpeechActivityParams = DEFAULT_PARAMS):
    """(speech [batch, T] float 0/1 per 20 ms frame, num_frames int32 [batch])."""
    out = analyse(waveform, length, params)
    return out["speech"], out["num_frames"]


def no_speech(ratio, params: SpeechActivityParams = DEFAULT_PARAMS):
    """[batch] bool: the clip holds too little voiced speech to name an emotion."""
    return tf.convert_to_tensor(ratio, tf.float32) < params.no_speech_threshold


def speech_ratio_one(waveform: np.ndarray,
                     params: SpeechActivityParams = DEFAULT_PARAMS) -> float:
    """speech_ratio of one 1-D clip, as a Python float (for notebooks and tests)."""
    wave = np.asarray(waveform, np.float32)[None, :]
    return float(speech_ratio(wave, np.array([wave.shape[1]], np.int32), params)[0])
