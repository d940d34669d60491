"""The model card quotes a command that reproduces the run and shows the figures that match how
the model must be called."""

from types import SimpleNamespace

from pipelines.features.spec import FeatureSpec
from zoo.evaluation.model_card import model_card, training_flags
from zoo.training.train import TrainConfig

SCHEMA = {
    "labels": ["neutral", "angry"],
    "split_method": {"mode": "speaker", "speaker_independent": True},
    "splits": {"train": {"examples": 4, "speakers": ["a"], "corpora": {"ravdess": 4}},
               "test": {"examples": 2, "speakers": ["b"], "corpora": {"ravdess": 2}}},
}


def _metrics(ua):
    return {"n": 2, "ua": ua, "wa": ua, "macro_f1": ua, "per_corpus": {}}


def test_flags_are_the_non_default_options_in_a_fixed_order():
    assert training_flags(TrainConfig(model="m")) == []
    config = TrainConfig(model="m", epochs=18, patience=6, speaker_norm=1.0, augment=False,
                         checkpoint="/local/path")
    assert training_flags(config) == ["--epochs 18", "--patience 6", "--speaker-norm 1.0",
                                      "--no-augment"]


def test_speaker_normalised_model_card_warns_and_shows_both_figures():
    tfset = SimpleNamespace(schema=SCHEMA, folder="tfrecords/x")
    config = TrainConfig(model="mfcc_cnn", data="tfrecords/x", speaker_norm=1.0,
                         spec_overrides={"normalization": "utterance"})
    metrics = {"test": _metrics(0.25), "speaker_norm": {"test": _metrics(0.5)},
               "epochs_run": 3, "best_epoch": 2, "train_seconds": 60}
    card = model_card(config, FeatureSpec(kind="mfcc"), tfset, metrics)
    assert "--speaker-norm 1.0" in card and "--spec normalization=utterance" in card
    assert "call `serving_with_stats`" in card
    assert "| test | 2 | 25.0% |" in card
    assert "| test, features normalised per speaker | 2 | 50.0% |" in card
    plain = model_card(TrainConfig(model="mfcc_cnn", data="tfrecords/x"),
                       FeatureSpec(kind="mfcc"), tfset, {"test": _metrics(0.25)})
    assert "serving_with_stats` with" not in plain and "per speaker |" not in plain
