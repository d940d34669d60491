"""Run an exported SavedModel on waveforms, the way TF Serving calls it (its signatures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.export.layout import (SIGNATURE_EMBEDDING, SIGNATURE_LENGTH, SIGNATURE_SPEAKER,
                        SIGNATURE_SPEAKER_STATS, SIGNATURE_STATS, min_clips_per_speaker,
                        read_export, resolve_version)

MAX_BATCH_SAMPLES = 16000 * 60 * 4  # four minutes of audio per request at most
EMBEDDING_BATCH = 1024  # embeddings per serving_with_speaker_stats request


def batches(waves: list[np.ndarray], batch_size: int = 16,
            max_batch_samples: int = MAX_BATCH_SAMPLES):
    """Index arrays into `waves`: clips sorted by length, at most batch_size per batch and at
    most max_batch_samples once padded to the longest (a longer clip goes alone)."""
    order = np.argsort([len(w) for w in waves], kind="stable")
    start = 0
    while start < len(order):
        stop = start + 1
        longest = len(waves[order[start]])
        while stop < len(order) and stop - start < batch_size:
            longest = max(longest, len(waves[order[stop]]))
            if longest * (stop - start + 1) > max_batch_samples:
                break
            stop += 1
        yield order[start:stop]
        start = stop


def padded(waves: list[np.ndarray], idx) -> tuple[np.ndarray, np.ndarray]:
    """(rows [len(idx), longest] zero-padded float32, lengths int32) of waves[i] for i in idx."""
    length = np.array([len(waves[i]) for i in idx], np.int32)
    batch = np.zeros((len(idx), int(length.max())), np.float32)
    for row, i in enumerate(idx):
        batch[row, :length[row]] = waves[i]
    return batch, length


def open_runner(path, progress: bool = False):
    """SavedModelRunner for an export, zoo.inference.lite.LiteRunner for a .tflite (zoo.lite)."""
    from zoo.inference.lite import LiteRunner, is_tflite

    return LiteRunner(path, progress=progress) if is_tflite(path) else SavedModelRunner(path)


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
        from pipelines.features.spec import FeatureSpec

        return FeatureSpec.from_dict(self.info["feature_spec"])

    def run_batch(self, waveform: np.ndarray, length: np.ndarray, stats=None) -> dict:
        """The outputs of serving_with_length (serving_with_stats with stats) for one padded
        batch, as numpy arrays."""
        tf = quiet_tensorflow()
        inputs = {"waveform": tf.constant(waveform, tf.float32),
                  "length": tf.constant(length, tf.int32)}
        if stats is None:
            out = self.signature(**inputs)
        else:
            if SIGNATURE_STATS not in self.loaded.signatures:
                raise ValueError(f"{self.path}: exported without the {SIGNATURE_STATS} "
                                 "signature")
            out = self.loaded.signatures[SIGNATURE_STATS](
                **inputs, feature_mean=tf.constant(stats[0]),
                feature_std=tf.constant(stats[1]))
        return {k: v.numpy() for k, v in out.items()}

    def predict_with_speech(self, waves: list[np.ndarray], batch_size: int = 16,
                            max_batch_samples: int = MAX_BATCH_SAMPLES, stats=None):
        """(probabilities [n, classes], speech ratios [n] or None): the speech ratios the
        export's graph returns beside the probabilities (zoo.export.reliability), None for an
        export made before it had them. Clips are batched by similar length (less padding),
        results come back in input order. stats: optional (mean, std) arrays [n, C] per clip
        (per-speaker normalisation)."""
        out = np.zeros((len(waves), len(self.labels)), np.float32)
        ratios = np.zeros(len(waves), np.float32) if self.speech_ratio_output else None
        for idx in batches(waves, batch_size, max_batch_samples):
            batch, length = padded(waves, idx)
            clip_stats = None if stats is None else (stats[0][idx], stats[1][idx])
            result = self.run_batch(batch, length, clip_stats)
            out[idx] = result["probabilities"]
            if ratios is not None:
                ratios[idx] = result["speech_ratio"]
        return out, ratios

    def predict(self, waves: list[np.ndarray], batch_size: int = 16,
                max_batch_samples: int = MAX_BATCH_SAMPLES, stats=None) -> np.ndarray:
        """Probabilities [n, classes] (predict_with_speech without the speech ratios)."""
        return self.predict_with_speech(waves, batch_size, max_batch_samples, stats)[0]

    @property
    def speech_ratio_output(self) -> bool:
        """Whether the export's graph returns speech_ratio (exports made since
        zoo.export.reliability, in every waveform signature alike)."""
        return "speech_ratio" in self.signature.structured_outputs

    @property
    def by_speaker(self) -> bool:
        """Whether the export has serving_by_speaker (zoo.refit_head)."""
        return SIGNATURE_SPEAKER in self.loaded.signatures

    @property
    def min_clips_per_speaker(self) -> int:
        return min_clips_per_speaker(self.info)

    @property
    def two_step(self) -> bool:
        """Whether the export has serving_embedding and serving_with_speaker_stats, the
        two-step form of serving_by_speaker (bounded request size)."""
        return {SIGNATURE_EMBEDDING, SIGNATURE_SPEAKER_STATS} <= set(self.loaded.signatures)

    def embed(self, waves: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Embeddings [n, D] through serving_embedding, batched as predict()."""
        tf = quiet_tensorflow()
        sig = self.loaded.signatures[SIGNATURE_EMBEDDING]
        out = None
        for idx in batches(waves, batch_size):
            batch, length = padded(waves, idx)
            emb = sig(waveform=tf.constant(batch), length=tf.constant(length))["embedding"]
            if out is None:
                out = np.zeros((len(waves), emb.shape[-1]), np.float32)
            out[idx] = emb.numpy()
        return out

    def predict_by_speaker(self, waves: list[np.ndarray], speakers, group_size: int = 0,
                           seed: int = 0, batch_size: int = 16) -> np.ndarray:
        """Probabilities [n, classes] with per-speaker statistics: from all of a speaker's
        clips or, with group_size k, from each speaker's clips dealt at random (seeded) into
        groups of k clips (the last may hold fewer): how well the model does when a client has
        only k clips of a speaker at a time.

        Exports with the two-step signatures embed every clip once (serving_embedding, in
        batches of batch_size), take each group's mean and standard deviation here and
        classify the embeddings with them (serving_with_speaker_stats): requests stay small
        however many clips a speaker has. Older exports get one serving_by_speaker request per
        group."""
        tf = quiet_tensorflow()
        if not self.by_speaker:
            raise ValueError(f"{self.path}: exported without the {SIGNATURE_SPEAKER} signature")
        speakers = np.asarray(speakers).astype(str)
        rng = np.random.default_rng(seed)
        groups = []
        for speaker in dict.fromkeys(speakers):
            idx = np.flatnonzero(speakers == speaker)
            if group_size > 0:
                idx = rng.permutation(idx)
                groups += [(speaker, idx[i:i + group_size])
                           for i in range(0, len(idx), group_size)]
            else:
                groups.append((speaker, idx))
        out = np.zeros((len(waves), len(self.labels)), np.float32)
        if self.two_step:
            emb = self.embed(waves, batch_size)
            mean, std = np.zeros_like(emb), np.zeros_like(emb)
            for _, idx in groups:
                mean[idx], std[idx] = emb[idx].mean(axis=0), emb[idx].std(axis=0)
            sig = self.loaded.signatures[SIGNATURE_SPEAKER_STATS]
            for start in range(0, len(waves), EMBEDDING_BATCH):
                rows = slice(start, start + EMBEDDING_BATCH)
                out[rows] = sig(embedding=tf.constant(emb[rows]),
                                embedding_mean=tf.constant(mean[rows]),
                                embedding_std=tf.constant(std[rows]))["probabilities"].numpy()
            return out
        for speaker, idx in groups:
            batch, length = padded(waves, idx)
            result = self.loaded.signatures[SIGNATURE_SPEAKER](
                waveform=tf.constant(batch), length=tf.constant(length),
                speaker=tf.constant([speaker] * len(idx)))
            out[idx] = result["probabilities"].numpy()
        return out
