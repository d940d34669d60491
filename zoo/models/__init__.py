"""Model families; each module registers its builders with zoo.registry when imported."""

from pipelines.spec import FeatureSpec, logmel_spec, mfcc_spec

# The zoo's feature contracts: silence trimmed at 40 dB below the loudest frame (RAVDESS clips
# are about 30% digital silence), DC removed, no normalisation: every model measured on unseen
# speakers here did better without per-utterance normalisation (README, Results).
# `--spec normalization=utterance` (with --speaker-norm for per-speaker statistics) opts in.
TRIM_DB = 40.0


def zoo_mfcc_spec() -> FeatureSpec:
    return mfcc_spec(trim_db=TRIM_DB, normalization="none")


def zoo_logmel_spec() -> FeatureSpec:
    return logmel_spec(trim_db=TRIM_DB, normalization="none")
