"""Run an exported SavedModel on waveforms, the way TF Serving calls it (its signatures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.tfenv import quiet_tensorflow
from zoo.layout import (SIGNATURE_LENGTH, SIGNATURE_SPEAKER, SIGNATURE_STATS,
                        min_clips_per_speaker, read_export, resolve_version)


def padded(waves: list[np.ndarray], idx) -> tuple[np.ndarray, np.ndarray]:
    """(rows [len(idx), longest] zero-padded float32, lengths int32) of waves[i] for i in idx."""
    length = np.array([len(waves[i]) for i in idx], np.int32)
    batch = np.zeros((len(idx), int(length.max())), np.float32)
    for row, i in enumerate(idx):
        batch[row, :length[row]] = waves[i]
    return batch, length


class SavedModelRunner:
    """Loads savedmodels/<model>[/<version>] and predicts on lists of 1-D waveforms."""

    def __init__(self, path):
        tf = quiet_tensorflow()
        self.path = resolve_version(Path(path))
        self.info = read_export(self.path)
        self.labels: list[str] = list(self.info["labels"])
        self.loaded = tf.saved_model.load(str(self.path))
        self.signature = self.loaded.signatures[SIGNATURE_LENGTH]

    @property
    def spec(self):
        from pipelines.spec import FeatureSpec

        return FeatureSpec.from_dict(self.info["feature_spec"])

    def predict_batch(self, waveform: np.ndarray, length: np.ndarray, stats=None) -> np.ndarray:
        tf = quiet_tensorflow()
        inputs = {"waveform": tf.constant(waveform, tf.float32),
                  "length": tf.constant(length, tf.int32)}
        if stats is None:
            return self.signature(**inputs)["probabilities"].numpy()
        if SIGNATURE_STATS not in self.loaded.signatures:
            raise ValueError(f"{self.path}: exported without the {SIGNATURE_STATS} signature")
        out = self.loaded.signatures[SIGNATURE_STATS](
            **inputs, feature_mean=tf.constant(stats[0]), feature_std=tf.constant(stats[1]))
        return out["probabilities"].numpy()

    def predict(self, waves: list[np.ndarray], batch_size: int = 16,
                max_batch_samples: int = 16000 * 60 * 4, stats=None) -> np.ndarray:
        """Probabilities [n, classes]; clips are batched by similar length (less padding),
        results come back in input order. stats: optional (mean, std) arrays [n, C] per clip
        (per-speaker normalisation)."""
        order = np.argsort([len(w) for w in waves], kind="stable")
        out = np.zeros((len(waves), len(self.labels)), np.float32)
        start = 0
        while start < len(order):
            stop = start + 1
            longest = len(waves[order[start]])
            while stop < len(order) and stop - start < batch_size:
                longest = max(longest, len(waves[order[stop]]))
                if longest * (stop - start + 1) > max_batch_samples:
                    break
                stop += 1
            idx = order[start:stop]
            batch, length = padded(waves, idx)
            clip_stats = None if stats is None else (stats[0][idx], stats[1][idx])
            out[idx] = self.predict_batch(batch, length, clip_stats)
            start = stop
        return out

    @property
    def by_speaker(self) -> bool:
        """Whether the export has serving_by_speaker (zoo.refit_head)."""
        return SIGNATURE_SPEAKER in self.loaded.signatures

    @property
    def min_clips_per_speaker(self) -> int:
        return min_clips_per_speaker(self.info)

    def predict_by_speaker(self, waves: list[np.ndarray], speakers, group_size: int = 0,
                           seed: int = 0) -> np.ndarray:
        """Probabilities [n, classes] through serving_by_speaker: one request per speaker
        holding all of that speaker's clips (the statistics come from the request), or, with
        group_size k, each speaker's clips dealt at random (seeded) into requests of k clips
        (the last may hold fewer): how well the model does when a client has only k clips of a
        speaker at a time."""
        tf = quiet_tensorflow()
        if not self.by_speaker:
            raise ValueError(f"{self.path}: exported without the {SIGNATURE_SPEAKER} signature")
        speakers = np.asarray(speakers).astype(str)
        rng = np.random.default_rng(seed)
        requests = []
        for speaker in dict.fromkeys(speakers):
            idx = np.flatnonzero(speakers == speaker)
            if group_size > 0:
                idx = rng.permutation(idx)
                requests += [(speaker, idx[i:i + group_size])
                             for i in range(0, len(idx), group_size)]
            else:
                requests.append((speaker, idx))
        out = np.zeros((len(waves), len(self.labels)), np.float32)
        for speaker, idx in requests:
            batch, length = padded(waves, idx)
            result = self.loaded.signatures[SIGNATURE_SPEAKER](
                waveform=tf.constant(batch), length=tf.constant(length),
                speaker=tf.constant([speaker] * len(idx)))
            out[idx] = result["probabilities"].numpy()
        return out
