"""make_dataset over a small TFRecord set: evaluation is deterministic and never augmented,
training differs between epochs, SpecAugment only masks, padded frames are exact zeros."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines.features import extract as F
from pipelines.audio.augment import Augment
from pipelines.records.dataset import class_weights, make_dataset
from pipelines.features.spec import FeatureSpec, mfcc_spec
from pipelines.records.tfrecord import open_set

# SpecAugment and nothing else: no crop, speed, gain or noise
MASKS_ONLY = Augment(speed=None, gain_db=0.0, noise_snr_db=None, noise_prob=0.0,
                     time_masks=2, time_mask_frames=20, freq_masks=2, freq_mask_bins=8)


def by_id(ds) -> tuple[list[str], dict[str, tuple[np.ndarray, int]]]:
    """One pass over a with_meta dataset: clip ids in order, and {id: (features, label)}."""
    order, items = [], {}
    for x, y, meta in ds:
        x, y = x.numpy(), y.numpy()
        for i, clip_id in enumerate(meta["id"].numpy()):
            clip_id = clip_id.decode()
            order.append(clip_id)
            items[clip_id] = (x[i], int(y[i]))
    return order, items


@pytest.fixture(scope="module")
def waveforms(built_set) -> dict[str, np.ndarray]:
    """The train split's waveforms by id, as stored (no DC removal, no trimming)."""
    spec = FeatureSpec(remove_dc=False)
    out = {}
    for x, _, meta in make_dataset(built_set, "train", spec, batch_size=8, output="waveform",
                                   with_meta=True):
        for i, clip_id in enumerate(meta["id"].numpy()):
            out[clip_id.decode()] = x["waveform"][i, :int(x["length"][i])].numpy()
    return out


def assert_padding_is_zero(items, waveforms, spec):
    for clip_id, (feats, _) in items.items():
        frames = spec.frames(len(waveforms[clip_id]))
        assert feats.shape[0] >= frames
        assert not feats[frames:].any(), clip_id
        assert feats[:frames].any(axis=1).all(), clip_id


@pytest.mark.parametrize("spec", [FeatureSpec(), mfcc_spec(trim_db=40.0)],
                         ids=["logmel", "mfcc-trim"])
def test_evaluation_is_deterministic_and_never_augmented(built_set, waveforms, spec):
    # an Augment passed in by mistake must still be ignored when training=False
    ds = make_dataset(built_set, "train", spec, batch_size=8, training=False, augment=Augment(),
                      with_meta=True)
    order1, first = by_id(ds)
    order2, second = by_id(ds)
    manifest = open_set(built_set).manifest()
    assert sorted(order1) == sorted(manifest.loc[manifest["split"] == "train", "id"])
    assert order1 == order2
    for clip_id in first:
        np.testing.assert_array_equal(first[clip_id][0], second[clip_id][0])
    # and equal to the clip's features computed on its own (up to float32 rounding)
    labels, emotions = open_set(built_set).labels, manifest.set_index("id")["emotion"]
    one = tf.function(lambda w, n: F.compute(w, n, spec), input_signature=[
        tf.TensorSpec([1, None], tf.float32), tf.TensorSpec([1], tf.int32)])
    for clip_id, (feats, label) in first.items():
        wave = waveforms[clip_id]
        alone, frames = one(wave[None], [len(wave)])
        frames = int(frames[0])
        np.testing.assert_allclose(feats[:frames], alone[0, :frames], rtol=1e-5, atol=1e-4)
        assert not feats[frames:].any(), clip_id
        assert labels[label] == emotions[clip_id]
    if spec.trim_db is None:
        assert_padding_is_zero(first, waveforms, spec)


def test_training_differs_between_epochs(built_set):
    ds = make_dataset(built_set, "train", batch_size=8, training=True, with_meta=True, seed=3)
    order1, first = by_id(ds)
    order2, second = by_id(ds)
    assert sorted(order1) == sorted(order2) and order1 != order2  # reshuffled
    # beyond float rounding (batches differ between epochs, so rounding alone may differ)
    same = [i for i in first if first[i][0].shape == second[i][0].shape
            and np.allclose(first[i][0], second[i][0], rtol=1e-4, atol=1e-3)]
    assert not same
    for clip_id in first:  # 3 s crops: at most 301 frames
        assert first[clip_id][0].shape[0] <= FeatureSpec().frames(48000)


def test_spec_augment_only_masks_and_changes_every_epoch(built_set, waveforms):
    spec = FeatureSpec()
    _, plain = by_id(make_dataset(built_set, "train", spec, batch_size=8, with_meta=True))
    ds = make_dataset(built_set, "train", spec, batch_size=8, training=True, augment=MASKS_ONLY,
                      clip_seconds=None, with_meta=True)
    _, epoch1 = by_id(ds)
    _, epoch2 = by_id(ds)
    masked_clips, changed = 0, 0
    for clip_id in epoch1:
        frames = spec.frames(len(waveforms[clip_id]))
        clean = plain[clip_id][0][:frames]
        patterns = []
        for epoch in (epoch1, epoch2):
            feats = epoch[clip_id][0]
            masked = feats[:frames]
            kept = masked != 0
            # unmasked values are the clean features; masked ones are whole frames or channels
            np.testing.assert_allclose(masked[kept], clean[kept], rtol=1e-5, atol=1e-4)
            zeroed = ~kept & (clean != 0)
            rows, cols = ~kept.any(axis=1), ~kept.any(axis=0)
            assert not (zeroed & ~rows[:, None] & ~cols[None, :]).any(), clip_id
            assert rows.sum() <= 2 * (MASKS_ONLY.time_mask_frames - 1)
            assert cols.sum() <= 2 * (MASKS_ONLY.freq_mask_bins - 1)
            assert not feats[frames:].any(), clip_id  # padding stays exact zeros
            masked_clips += bool(zeroed.any())
            patterns.append(zeroed)
        changed += not np.array_equal(*patterns)
    # masks are random per clip and epoch (one may have width 0 or fall on a short clip's
    # padding), so ask for most clips, not all
    assert masked_clips >= 0.8 * 2 * len(epoch1)
    assert changed >= 0.8 * len(epoch1)


def test_class_weights_average_one_over_examples(built_set):
    tfset = open_set(built_set)
    weights = class_weights(built_set)
    counts = tfset.class_counts("train")
    total = sum(counts.values())
    assert sorted(weights) == list(range(len(tfset.labels)))
    mean = sum(weights[i] * counts[name] for i, name in enumerate(tfset.labels)) / total
    assert mean == pytest.approx(1.0)
    happy = tfset.labels.index("happy")  # one generated clip: the rarest class weighs most
    assert weights[happy] == max(weights.values())
