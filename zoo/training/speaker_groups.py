"""Finishing a run trained with speaker groups (`python -m zoo.train --speaker-groups G`).

Such a network standardises its pooled embedding per group of G clips of one speaker
(zoo.models.layers.GroupStandardize) before its head, so its trained head only makes sense on embeddings
standardised with a speaker's statistics, and a single clip has none. At the end of the run:

- the per-speaker path is the trained network as it is, with the statistics taken over *all*
  clips of the speaker instead of a group of G: `serving_by_speaker` in the export, and the
  'standardised per speaker' rows of metrics.json;
- the plain path (`serving_default`, one clip, no speaker information) is a linear head fitted on
  the frozen un-standardised embeddings, as `zoo.refit_head` fits it (L2 chosen by validation UA).

The export is laid out as a zoo.refit_head export (zoo.json `speaker_head`, speaker_head.keras),
so zoo.evaluate --speaker-norm, zoo.predict --by-speaker and zoo.serving treat both alike.
"""

from __future__ import annotations

import numpy as np


class GroupedRun:
    """Embeddings of every split, the fitted plain head, and predictions both ways."""

    def __init__(self, model, data, spec, labels: list[str], batch_size: int = 32,
                 seed: int = 0, l2_grid=None, progress: bool = True):
        from pipelines.records.tfrecord import open_set
        from zoo.models.cnn import SPEAKER_STANDARDIZE
        from zoo.training.embedding_heads import (
            DEFAULT_L2, embed_split, embedding_layer, embedding_model, fit_head, plain_model,
            trained_speaker_head,
        )

        self.labels = labels
        self.trunk = embedding_model(model)
        self.speaker_head = trained_speaker_head(model)
        tfset = open_set(data)
        self.manifest = tfset.manifest().set_index("id")
        self.embedded = {s: embed_split(self.trunk, data, s, spec, batch_size, progress)
                         for s in ("train", "validation", "test") if tfset.examples(s)}
        (x, y, _), (vx, vy, _) = self.embedded["train"], self.embedded["validation"]
        self.plain_head, l2, tried = fit_head((x, y), (vx, vy), labels, l2_grid or DEFAULT_L2,
                                              seed=seed)
        self.plain_model = plain_model(model, self.plain_head)
        self.selection = {"embedding_dim": int(x.shape[1]),
                          "embedding_input_of": embedding_layer(model),
                          "plain": {"l2": l2, "tried": tried},
                          "speaker": {"trained_with_speaker_groups": int(
                              model.get_layer(SPEAKER_STANDARDIZE).group_size)}}

    def predict(self, split: str):
        """Plain head, one clip at a time: a predictions DataFrame."""
        x, y, meta = self.embedded[split]
        return self._frame(self.plain_head(x, training=False), y, meta, split)

    def predict_by_speaker(self, split: str):
        """The trained head on embeddings standardised over all clips of each speaker."""
        from zoo.training.embedding_heads import speaker_standardize_np

        x, y, meta = self.embedded[split]
        z = speaker_standardize_np(x, meta["speaker"])
        return self._frame(self.speaker_head(z, training=False), y, meta, split)

    def _frame(self, probs, y, meta, split):
        from zoo.training.embedding_heads import predictions

        return predictions(np.asarray(probs), y, meta, split, self.labels, self.manifest)

    def export(self, spec, base, name: str, card: str, meta: dict, min_clips: int,
               reliability=None):
        from zoo.training.embedding_heads import export_refit

        meta = {**meta, "speaker_head": {"source": "trained with speaker groups",
                                         "min_clips_per_speaker": min_clips, **self.selection}}
        return export_refit(self.plain_model, self.trunk, self.speaker_head, spec, self.labels,
                            base, name, card, meta, reliability=reliability)
