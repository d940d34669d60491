"""Model families; each module registers its builders with zoo.models.registry when imported."""

from pipelines.features.spec import TRIM_DB, FeatureSpec, logmel_spec, mfcc_spec, whisper_spec

# The zoo's feature contracts: silence trimmed at 40 dB below the loudest frame (RAVDESS clips
# are about 30% digital silence), DC removed, no normalisation: every model measured on unseen
# speakers here did better without per-utterance normalisation (README, Results).
# `--spec normalization=utterance` (with --speaker-norm for per-speaker statistics) opts in.
# TRIM_DB (pipelines.features.spec) is re-exported here, where it was defined first.
__all__ = ["TRIM_DB", "zoo_logmel_spec", "zoo_mfcc_spec", "zoo_whisper_spec"]


def zoo_mfcc_spec() -> FeatureSpec:
    return mfcc_spec(trim_db=TRIM_DB, normalization="none")


def zoo_logmel_spec() -> FeatureSpec:
    return logmel_spec(trim_db=TRIM_DB, normalization="none")


def zoo_whisper_spec() -> FeatureSpec:
    """Whisper's front end (tiny.en: 80 bands), DC removed, silence kept (Whisper was trained
    on untrimmed audio; trimming measured no better, bench/whisper_layers.py)."""
    return whisper_spec(trim_db=None, remove_dc=True)
