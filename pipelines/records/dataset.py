"""tf.data input pipelines over a TFRecord set.

    ds = make_dataset("tfrecords/all", "train", spec, batch_size=32, training=True)
    for features, labels in ds: ...          # features [batch, T, C], zero-padded frames

Shards are interleaved, examples parsed in parallel and cached (as int16) when they fit, then
batched with per-batch padding; all feature work runs on whole batches on the graph. Training
adds shuffling, random crops of `clip_seconds`, waveform augmentation and SpecAugment;
evaluation uses whole clips and never augments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.features import extract as F
from pipelines.audio.augment import Augment, augment_clip, spec_augment
from pipelines.features.spec import FeatureSpec
from pipelines.common.tfenv import tfio_audio
from pipelines.common.io import write_text_atomic
from pipelines.records.speaker_stats import Accumulator, SpeakerStats, cache_name, raw_spec
from pipelines.records.tfrecord import SchemaError, TFRecordSet, open_set, parse_example, to_float

AUTOTUNE = tf.data.AUTOTUNE
CACHE_LIMIT_BYTES = 2_000_000_000
META_FIELDS = ("id", "speaker", "corpus", "emotion")


def preprocess_clip(pcm, length, spec: FeatureSpec):
    """One clip's int16 PCM -> float waveform [n'] after DC removal and trimming (per spec)."""
    wave, new_length = F.preprocess(to_float(pcm)[None, :], length[None], spec)
    return wave[0, :new_length[0]]


def _records(tfset: TFRecordSet, split: str, training: bool, seed: int,
             num_shards: int, shard_index: int):
    files = tfset.files(split)
    if not files:
        raise SchemaError(f"{tfset.folder}: split {split!r} is empty")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_shards > 1:
        if len(files) >= num_shards:
            ds = ds.shard(num_shards, shard_index)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4),
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    if num_shards > 1 and len(files) < num_shards:
        ds = ds.shard(num_shards, shard_index)
    return ds.map(parse_example, num_parallel_calls=AUTOTUNE)


def make_dataset(
    folder,
    split: str,
    spec: FeatureSpec | None = None,
    batch_size: int = 32,
    training: bool = False,
    clip_seconds: float | None = 3.0,
    augment: Augment | None = None,
    cache: bool | str = "auto",
    seed: int = 0,
    output: str = "features",
    with_meta: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    drop_remainder: bool = False,
    speaker_norm: float = 0.0,
    speaker_stats=None,
    sample_weights: dict[str, float] | None = None,
    speaker_groups: int = 0,
) -> tf.data.Dataset:
    """A batched dataset of (features, label) or, with output='waveform', of
    ({'waveform', 'length'}, label); with_meta adds a dict of id/speaker/corpus/emotion.

    training: shuffle, crop each clip to a random `clip_seconds` window (None = whole clips),
        apply `augment` (default Augment() when training, never when not training).
    cache: True / False / 'auto' (cache the preprocessed clips in memory when they fit).
    output='waveform' gives the waveforms after the spec's DC removal and trimming.
    num_shards / shard_index: this worker's share of the input (multi-worker training).
    speaker_norm: share of clips normalised with their speaker's statistics instead of their
        own (pipelines.records.speaker_stats; computed from the set and cached there unless
        `speaker_stats` is given): 0 = per-utterance only, 1 = per-speaker for every clip
        whose speaker has statistics; in between (training only) picks per clip at random.
    sample_weights: {'<corpus>/<label index>': weight} (see `balance_weights`); the dataset
        then yields (x, label, weight).
    speaker_groups: G > 0 makes every batch a run of groups of G clips of one speaker each (for
        zoo.models.layers.GroupStandardize); batch_size must be a multiple of G, and clips left over
        when a speaker's clips run out (fewer than G) are dropped.
    """
    tfset = open_set(folder)
    spec = spec or tfset.spec
    if output not in ("features", "waveform"):
        raise ValueError("output must be 'features' or 'waveform'")
    if training and augment is None:
        augment = Augment()
    if not training:
        augment = None
    audio = tfio_audio() if augment and (augment.time_masks or augment.freq_masks) else None
    if speaker_groups and (speaker_groups < 2 or batch_size % speaker_groups):
        raise ValueError(f"batch_size {batch_size} is not a multiple of speaker_groups "
                         f"{speaker_groups} (at least 2)")
    normalizer = _speaker_normalizer(folder, spec, speaker_norm, speaker_stats, training) \
        if speaker_norm > 0 and output == "features" else None
    needed = (("speaker",) if normalizer or speaker_groups else ()) \
        + (("corpus",) if sample_weights else ())
    meta_fields = META_FIELDS if with_meta else needed
    weight_of = _weight_lookup(sample_weights) if sample_weights else None
    ds = _records(tfset, split, training, seed, num_shards, shard_index)

    def prepare(ex):
        out = {"wave": preprocess_clip(ex["pcm"], ex["length"], spec), "label": ex["label"]}
        out.update({k: ex[k] for k in meta_fields})
        return out

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE)
    # float32 after trimming: about twice the int16 bytes on disk, at most
    if cache is True or (cache == "auto" and 2 * tfset.bytes(split) < CACHE_LIMIT_BYTES):
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(max(tfset.examples(split), 1), 4096), seed=seed,
                        reshuffle_each_iteration=True)
    crop = int(round(clip_seconds * spec.sample_rate)) if (training and clip_seconds) else None
    if augment is not None or crop is not None:
        def perturb(ex):
            if augment is not None:
                wave = augment_clip(ex["wave"], augment, crop)
            else:
                wave = ex["wave"][:crop]
            return {**ex, "wave": wave}

        ds = ds.map(perturb, num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda ex: {**ex, "length": tf.shape(ex["wave"])[0]},
                num_parallel_calls=AUTOTUNE)
    if speaker_groups:
        ds = _group_by_speaker(ds, speaker_groups)
    ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)

    def transform(batch):
        wave, length = batch["wave"], batch["length"]
        if output == "waveform":
            x = {"waveform": wave, "length": length}
        elif normalizer is not None:
            x = normalizer(wave, length, batch["speaker"])
        else:
            x, _ = F.compute(wave, length, spec, preprocessed=True)
        if output == "features" and augment is not None and audio is not None:
            x = spec_augment(x, augment, audio)
        if with_meta:
            return x, batch["label"], {k: batch[k] for k in META_FIELDS}
        if weight_of is not None:
            return x, batch["label"], weight_of(batch["corpus"], batch["label"])
        return x, batch["label"]

    ds = ds.map(transform, num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = not training
    return ds.with_options(options).prefetch(AUTOTUNE)


def _group_by_speaker(ds: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """Clips reordered into consecutive runs of `size` clips of one speaker (in the order the
    runs fill up); a speaker's last clips that do not fill a run are dropped."""
    ds = ds.group_by_window(
        key_func=lambda ex: tf.strings.to_hash_bucket_fast(ex["speaker"], 2 ** 62),
        reduce_func=lambda _, window: window.padded_batch(size, drop_remainder=True),
        window_size=size)
    return ds.unbatch()


def _speaker_normalizer(folder, spec: FeatureSpec, share: float, stats, training: bool):
    """A graph function (wave, length, speaker) -> features normalised per speaker for a
    `share` of clips (all clips with known statistics when not training)."""
    stats = stats or speaker_stats(folder, spec)
    speakers = stats.speakers
    means, stds = (tf.constant(a) for a in stats.arrays(speakers))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(speakers),
                                            tf.range(len(speakers), dtype=tf.int32)), -1)
    raw = raw_spec(spec)

    def normalize(wave, length, speaker):
        feats, frames = F.compute(wave, length, raw, preprocessed=True)
        index = table.lookup(speaker)
        safe = tf.maximum(index, 0)
        by_speaker = F.normalize(feats, frames, (tf.gather(means, safe), tf.gather(stds, safe)))
        by_clip = F.normalize(feats, frames)
        use = index >= 0
        if training and share < 1.0:
            use = tf.logical_and(use, tf.random.uniform(tf.shape(index)) < share)
        return tf.where(use[:, None, None], by_speaker, by_clip)

    return normalize


def _weight_lookup(weights: dict[str, float]):
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(weights)), tf.constant(list(weights.values()), tf.float32)), 1.0)

    def lookup(corpus, label):
        return table.lookup(tf.strings.join([corpus, tf.strings.as_string(label)], "/"))

    return lookup


def balance_weights(folder, split: str = "train", by: str = "corpus") -> dict[str, float]:
    """Per-clip weights keyed '<corpus>/<label index>', mean 1 over the split's clips.

    by='class': each emotion carries the same total weight. by='corpus': each (corpus, emotion)
    cell does, so a large corpus (TESS: 2 speakers, 2,800 clips) does not outweigh the others
    and every corpus has balanced classes.
    """
    tfset = open_set(folder)
    manifest = tfset.manifest()
    rows = manifest[manifest["split"] == split]
    if by == "class":
        counts = rows.groupby("label").size()
        per = {lab: len(rows) / (len(counts) * n) for lab, n in counts.items()}
        return {f"{c}/{lab}": per[lab] for c, lab in
                rows.groupby(["corpus", "label"]).size().index}
    if by != "corpus":
        raise ValueError("by must be 'class' or 'corpus'")
    counts = rows.groupby(["corpus", "label"]).size()
    return {f"{c}/{lab}": len(rows) / (len(counts) * n) for (c, lab), n in counts.items()}


def class_weights(folder, split: str = "train") -> dict[int, float]:
    """Inverse-frequency class weights (mean 1 over examples) for Keras' class_weight."""
    tfset = open_set(folder)
    counts = tfset.class_counts(split)
    total = sum(counts.values())
    labels = tfset.labels
    return {i: total / (len(labels) * counts[name]) for i, name in enumerate(labels)
            if counts.get(name)}


def speaker_stats(folder, spec: FeatureSpec, batch_size: int = 64) -> SpeakerStats:
    """Statistics of every speaker of a TFRecord set (all splits), cached in the set folder."""
    tfset = open_set(folder)
    cache = Path(folder) / "speaker_stats" / cache_name(spec)
    if cache.is_file():
        return SpeakerStats.from_json(cache.read_text())
    raw = raw_spec(spec)
    acc = Accumulator()
    for split in tfset.schema["splits"]:
        if tfset.examples(split) == 0:
            continue
        ds = make_dataset(folder, split, raw, batch_size, with_meta=True, cache=False)
        for feats, _, meta in ds:
            feats = feats.numpy()
            valid = np.any(feats != 0, axis=-1)
            for row, speaker in enumerate(meta["speaker"].numpy()):
                acc.add(speaker.decode(), feats[row][valid[row]])
    stats = acc.result(raw)
    write_text_atomic(cache, stats.to_json())
    return stats
