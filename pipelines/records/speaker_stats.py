"""Per-speaker feature statistics, for normalising features by speaker instead of by clip.

Per-utterance normalisation removes each clip's level and average spectrum, and with them the
part of the emotion signal that lies in how a clip differs from the speaker's usual voice
(angry louder and brighter than the same speaker's neutral). Normalising with statistics over
all of a speaker's clips keeps that difference while removing the speaker and the recording
set-up. The statistics use no labels: for a new speaker they come from their unlabelled clips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from pipelines.features.spec import FeatureSpec


@dataclasses.dataclass
class SpeakerStats:
    """speaker -> per-channel mean and standard deviation of raw (unnormalised) features."""

    spec: FeatureSpec
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    frames: dict[str, int]

    @property
    def speakers(self) -> list[str]:
        return sorted(self.mean)

    def arrays(self, speakers: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """[len(speakers), C] mean and std matrices in the given order."""
        return (np.stack([self.mean[s] for s in speakers]).astype(np.float32),
                np.stack([self.std[s] for s in speakers]).astype(np.float32))

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec.to_dict(), "speakers": {
            s: {"mean": self.mean[s].tolist(), "std": self.std[s].tolist(),
                "frames": self.frames[s]} for s in self.speakers}})

    @classmethod
    def from_json(cls, text: str) -> "SpeakerStats":
        data = json.loads(text)
        spk = data["speakers"]
        return cls(FeatureSpec.from_dict(data["spec"]),
                   {s: np.asarray(v["mean"], np.float32) for s, v in spk.items()},
                   {s: np.asarray(v["std"], np.float32) for s, v in spk.items()},
                   {s: int(v["frames"]) for s, v in spk.items()})


class Accumulator:
    def __init__(self):
        self.sums, self.squares, self.counts = {}, {}, {}

    def add(self, speaker: str, features: np.ndarray) -> None:
        """features [T, C] of one clip (valid frames only)."""
        f = features.astype(np.float64)
        if speaker not in self.sums:
            self.sums[speaker] = np.zeros(f.shape[1])
            self.squares[speaker] = np.zeros(f.shape[1])
            self.counts[speaker] = 0
        self.sums[speaker] += f.sum(axis=0)
        self.squares[speaker] += np.square(f).sum(axis=0)
        self.counts[speaker] += f.shape[0]

    def result(self, spec: FeatureSpec) -> SpeakerStats:
        mean, std = {}, {}
        for s, n in self.counts.items():
            m = self.sums[s] / n
            mean[s] = m.astype(np.float32)
            std[s] = np.sqrt(np.maximum(self.squares[s] / n - m * m, 0.0)).astype(np.float32)
        return SpeakerStats(spec, mean, std, dict(self.counts))


def raw_spec(spec: FeatureSpec) -> FeatureSpec:
    return spec.replace(normalization="none")


def from_waveforms(waves, speakers, spec: FeatureSpec, batch_size: int = 32) -> SpeakerStats:
    """Statistics from 1-D float waveforms with a speaker id each."""
    from pipelines.features import extract as F

    raw = raw_spec(spec)
    acc = Accumulator()
    for speaker, feats in zip(speakers, F.compute_many(waves, raw, batch_size)):
        acc.add(speaker, feats)
    return acc.result(raw)


def cache_name(spec: FeatureSpec) -> str:
    return hashlib.sha256(raw_spec(spec).to_json().encode()).hexdigest()[:16] + ".json"
