"""Train a registered model: `python -m zoo.train --model NAME [--data tfrecords/NAME] ...`

With no --data, a small real sample bundled with the package (98 RAVDESS clips, 7 actors) is
built into tfrecords/demo and used, so the command runs anywhere in a couple of minutes.
Models over SSL embeddings and waveforms (docs/ssl.md) are trained by zoo.training.ssl.

A run folder (runs/<model>-<data> by default) receives config.json, feature_spec.json,
versions.json, history.jsonl, metrics.json, predictions.csv, confusion.png and TensorBoard logs
(tb/). A killed run resumes where it stopped when started again with the same --run-dir.
At the end the best epoch (validation UA) is exported as a SavedModel that takes raw audio.

Test hook: with ZOO_INTERRUPT_AFTER_EPOCH=N in the environment, the run raises KeyboardInterrupt
at the end of epoch N, after its backup is written, as if it had been killed there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from pipelines.common.tfenv import quiet_tensorflow

from zoo.training.setup import (  # noqa: F401 - re-exported: these were defined here first
    DEMO_DIR, TrainConfig, TrainError, check_data, demo_data, export_base, make_strategy,
    package_versions, resolve_run_dir, seed_run, worker_role, write_hparams,
    write_run_files,
)


# ---------------------------------------------------------------- training

def train(config: TrainConfig) -> dict:
    """Run one training job; returns the metrics dict (also written to metrics.json)."""
    quiet_tensorflow()  # before keras: start-up noise stays hidden
    import keras

    from pipelines.records.dataset import balance_weights, make_dataset
    from pipelines.records.tfrecord import open_set
    from zoo.models.registry import build_model, get_entry

    entry = get_entry(config.model)
    if entry.input != "features":
        if config.speaker_groups:
            raise TrainError(f"--speaker-groups is for the feature models (CNN, CRNN); "
                             f"{config.model} takes {entry.input} input")
        from zoo.training.ssl import train_ssl  # embedding and waveform models

        return train_ssl(config)
    strategy = make_strategy(config.strategy, config.cpu_devices)
    data = Path(config.data) if config.data else demo_data()
    tfset = open_set(data)
    check_data(tfset)
    labels = tfset.labels
    spec = entry.default_spec().replace(**config.spec_overrides)
    if config.speaker_norm > 0 and spec.normalization == "none":
        raise TrainError("--speaker-norm needs normalised features; this FeatureSpec has "
                         "normalization 'none' (add --spec normalization=utterance)")
    overrides = _check_speaker_groups(config, strategy.num_replicas_in_sync)
    num_workers, worker_index, chief = worker_role(strategy)
    run = resolve_run_dir(config, data)
    if not chief:  # other workers write their (unused) copies to a scratch folder
        run = run / f".worker-{worker_index}"
    run.mkdir(parents=True, exist_ok=True)
    seed_run(config, keras.utils.set_random_seed)
    epochs = config.resolved_epochs()
    print(f"model {config.model} on {data} ({tfset.examples('train')} train / "
          f"{tfset.examples('validation')} validation clips), {epochs} epochs, "
          f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s), "
          f"run folder {run}")

    from pipelines.audio.augment import Augment

    augment = Augment() if config.augment else Augment.none()
    if config.speaker_norm > 0:  # random gain would blur the level relative to the speaker
        augment = dataclasses.replace(augment, gain_db=0.0)
    train_ds = make_dataset(data, "train", spec, config.batch_size, training=True,
                            clip_seconds=config.clip_seconds, augment=augment, seed=config.seed,
                            num_shards=num_workers, shard_index=worker_index,
                            speaker_norm=config.speaker_norm,
                            speaker_groups=config.speaker_groups,
                            sample_weights=balance_weights(data, "train", config.balance)
                            if config.balance != "none" else None).repeat()
    # Model selection uses the normalisation the model mostly trains with: per speaker only when
    # every training clip is normalised per speaker, per utterance (the serving default) else.
    val_ds = make_dataset(data, "validation", spec, config.batch_size,
                          speaker_norm=1.0 if config.speaker_norm >= 1.0 else 0.0,
                          speaker_groups=config.speaker_groups)
    # config.batch_size is the global batch: with several workers each one reads its shard
    # and tf.distribute splits its batches, so a step still consumes batch_size clips.
    steps = -(-tfset.examples("train") // config.batch_size)

    with strategy.scope():
        model = build_model(config.model, len(labels), spec, **overrides)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr / 10, decay_steps=max(epochs * steps, 1),
            warmup_target=config.lr, warmup_steps=config.warmup_epochs * steps, alpha=0.01)
        model.compile(optimizer=keras.optimizers.AdamW(schedule,
                                                       weight_decay=config.weight_decay),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _write_run_files(run, config, spec, labels, tfset, model)

    from zoo.training.callbacks import ResumeState, ValidationMetrics

    best_path = run / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(best_path, monitor="val_ua", mode="max",
                                                 save_best_only=True, save_weights_only=True)
    stopper = keras.callbacks.EarlyStopping(monitor="val_ua", mode="max",
                                            patience=config.patience)
    callbacks = [
        ValidationMetrics(val_ds, labels, run, run / "tb", write=chief),
        keras.callbacks.BackupAndRestore(str(run / "backup")),
        checkpoint, stopper,
        keras.callbacks.TensorBoard(str(run / "tb"), write_graph=False),
        keras.callbacks.TerminateOnNaN(),
    ]
    callbacks.append(ResumeState(run, checkpoint, stopper))
    if os.environ.get("ZOO_INTERRUPT_AFTER_EPOCH"):  # test hook, see InterruptAfterEpoch
        from zoo.training.callbacks import InterruptAfterEpoch

        callbacks.append(InterruptAfterEpoch(int(os.environ["ZOO_INTERRUPT_AFTER_EPOCH"])))
    if chief:
        _write_hparams(run / "tb", config, spec)
    if num_workers > 1:
        from zoo.training.callbacks import AverageBatchNormStatistics

        callbacks.insert(0, AverageBatchNormStatistics(strategy))
        _multiworker_workarounds(model, strategy, val_ds)
    started = time.perf_counter()
    with strategy.scope():
        model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                  verbose=2 if not sys.stdout.isatty() else 1)
    seconds = time.perf_counter() - started
    if not best_path.exists():
        raise TrainError("no epoch finished with a validation score; nothing to export")
    model.load_weights(best_path)
    if not chief:
        return {}
    if config.speaker_groups:
        return _finish_grouped(config, model, spec, labels, data, tfset, run, seconds)
    from zoo.training.report import finish_run, headline, predict_split

    def save_and_export(metrics):
        from zoo.export.savedmodel import export
        from zoo.evaluation.model_card import model_card
        from zoo.export.reliability import reliability_from

        model.save(run / "model.keras")
        return export(model, spec, labels, export_base(config, run), config.model,
                      model_card(config, spec, tfset, metrics),
                      meta={"metrics": headline(metrics), "run": str(run), "data": str(data),
                            "speaker_norm_training_share": config.speaker_norm},
                      reliability=reliability_from(metrics))

    return finish_run(
        config, labels, data, tfset, run, seconds,
        lambda split: predict_split(model, data, split, spec, labels),
        save_and_export,
        (lambda split: predict_split(model, data, split, spec, labels, speaker_norm=True))
        if config.speaker_norm > 0 else None)


def _finish_grouped(config, model, spec, labels, data, tfset, run, seconds) -> dict:
    """Metrics and export of a run trained with speaker groups (zoo.training.speaker_groups)."""
    from zoo.training.embedding_heads import MIN_CLIPS
    from zoo.evaluation.model_card import SPEAKER_EMBEDDING_ROWS, model_card
    from zoo.export.reliability import reliability_from
    from zoo.training.speaker_groups import GroupedRun
    from zoo.training.report import finish_run, headline

    print("embedding every split; fitting the plain head for single clips")
    grouped = GroupedRun(model, data, spec, labels, seed=config.seed,
                         progress=sys.stdout.isatty())

    def save_and_export(metrics):
        model.save(run / "model.keras")
        return grouped.export(spec, export_base(config, run), config.model,
                              model_card(config, spec, tfset, metrics),
                              meta={"metrics": headline(metrics), "run": str(run),
                                    "data": str(data), "speaker_groups": config.speaker_groups},
                              min_clips=MIN_CLIPS, reliability=reliability_from(metrics))

    return finish_run(config, labels, data, tfset, run, seconds, grouped.predict,
                      save_and_export, grouped.predict_by_speaker,
                      speaker_title=SPEAKER_EMBEDDING_ROWS)


def _check_speaker_groups(config: TrainConfig, replicas: int = 1) -> dict:
    """The model builder's overrides, with speaker_groups when --speaker-groups is given."""
    groups = config.speaker_groups
    if not groups:
        return dict(config.overrides)
    if groups < 2:
        raise TrainError(f"--speaker-groups must be at least 2 clips, not {groups}")
    if config.batch_size % (groups * replicas):
        per = f" times {replicas} replicas" if replicas > 1 else ""
        raise TrainError(f"--batch-size {config.batch_size} is not a multiple of "
                         f"--speaker-groups {groups}{per} (each replica's share of a batch "
                         "must be whole groups)")
    if config.speaker_norm > 0:
        raise TrainError("--speaker-groups and --speaker-norm are two ways of using speaker "
                         "statistics; choose one")
    return {**config.overrides, "speaker_groups": groups}


def _multiworker_workarounds(model, strategy, dataset) -> None:
    """Two steps of Keras 3.15's fit() fail under MultiWorkerMirroredStrategy
    (keras-team/keras#20585); both are bypassed here.

    1. fit() begins by strategy.reduce()-ing the first distributed batch, a tuple of PerReplica
       values, which the strategy refuses ("Attempt to convert a value (PerReplica...) to a
       Tensor"). A model with no strategy of its own skips that step, so the model's metrics,
       loss and optimizer are built here from the shapes of a local batch, as fit() would,
       and fit() takes the strategy of the scope it is called in.
    2. Each step's logs are reduced with strategy.reduce("MEAN", value, axis=0), which fails on
       scalars ("Invalid reduction dimension 0"). The logs are metric results, whose variables
       are already summed across workers, so giving them a batch axis of 1 makes that mean
       the (equal) value of every replica.
    """
    tf = quiet_tensorflow()
    x, y = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y))
    model._distribute_strategy = None
    step = model.train_step

    def train_step(data):
        return {k: tf.reshape(v, [1]) for k, v in step(data).items()}

    model.train_step = train_step


def _write_run_files(run, config, spec, labels, tfset, model) -> None:
    write_run_files(run, config, labels, tfset, int(model.count_params()), {})
    spec.save(run / "feature_spec.json")


def _write_hparams(tb_dir: Path, config: TrainConfig, spec) -> None:
    write_hparams(tb_dir, config, {
        "clip_seconds": config.clip_seconds, "augment": config.augment,
        "feature_kind": spec.kind, "balance": config.balance,
        "trim_db": spec.trim_db if spec.trim_db is not None else -1.0,
        "speaker_norm": config.speaker_norm})


# ---------------------------------------------------------------- CLI

def parse_args(argv=None) -> TrainConfig:
    from zoo.models.registry import list_models

    parser = argparse.ArgumentParser(
        prog="python -m zoo.train",
        description="Train a model from the zoo on a TFRecord set (python -m pipelines.build) "
                    "with speaker-independent validation, then export it as a SavedModel.",
        epilog="models: " + ", ".join(list_models()))
    parser.add_argument("--model", required=True, help="registered model name (see below)")
    parser.add_argument("--data", help="TFRecord set folder; default: the bundled 98-clip demo "
                                       "sample, built into tfrecords/demo")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 40; demo 30; "
                                                   "Whisper heads 60)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size (32)")
    parser.add_argument("--lr", type=float,
                        help="peak learning rate of the warm-up + cosine schedule (1e-3; "
                             "Whisper heads 1e-2 linear, 3e-3 otherwise)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW (1e-4)")
    parser.add_argument("--patience", type=int,
                        help="stop after this many epochs without a better validation UA (10; "
                             "Whisper heads 20)")
    parser.add_argument("--clip-seconds", type=float, default=3.0,
                        help="random training crop length in seconds (3.0)")
    parser.add_argument("--no-augment", action="store_true",
                        help="no speed/gain/noise/SpecAugment augmentation")
    parser.add_argument("--balance", default="corpus", choices=["corpus", "class", "none"],
                        help="training sample weights: corpus = every (corpus, emotion) cell "
                             "weighs the same (default); class = every emotion; none. SSL "
                             "models weigh classes unless none")
    parser.add_argument("--run-dir", help="run folder (default runs/<model>-<data>[-N]); an "
                                          "unfinished run there is resumed")
    parser.add_argument("--export", help="SavedModel base folder (default savedmodels; for "
                                         "the demo data <run>/savedmodels)")
    parser.add_argument("--strategy", default="default",
                        choices=["default", "mirrored", "multiworker"],
                        help="tf.distribute: mirrored = all local devices; multiworker = "
                             "MultiWorkerMirroredStrategy configured by TF_CONFIG")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--deterministic", action="store_true",
                        help="TF op determinism (slower; augmentation order still varies "
                             "with parallel input processing)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model builder override, e.g. --set head_dropout=0.5 (JSON value)")
    parser.add_argument("--spec", action="append", default=[], metavar="KEY=VALUE",
                        help="FeatureSpec override, e.g. --spec trim_db=30 (JSON value)")
    parser.add_argument("--speaker-norm", type=float, default=0.0, metavar="SHARE",
                        help="share of training clips (0-1) normalised with their speaker's "
                             "feature statistics instead of their own; the rest per utterance. "
                             "A model trained with 0.5 serves both ways (zoo.evaluate "
                             "--speaker-norm). Default 0")
    parser.add_argument("--speaker-groups", type=int, default=0, metavar="G",
                        help="train with the pooled embedding standardised per speaker: "
                             "batches are groups of G clips of one speaker (the batch size "
                             "must be a multiple of G), and the export classifies each "
                             "speaker's clips with their statistics (serving_by_speaker) and "
                             "single clips with a re-fitted plain head. Default 0 (off); "
                             "measured no better than zoo.refit_head after normal training")
    parser.add_argument("--checkpoint",
                        help="pretrained encoder for wav2vec2_finetune: a local folder or a "
                             "Hugging Face hub id such as facebook/wav2vec2-base "
                             "(owner/name[@revision]; docs/ssl.md)")
    parser.add_argument("--cpu-devices", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = _model_defaults(args.model)
    return TrainConfig(
        model=args.model, data=args.data,
        epochs=args.epochs if args.epochs is not None else defaults.get("epochs"),
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else defaults.get("lr", 1e-3),
        weight_decay=args.weight_decay,
        patience=args.patience if args.patience is not None else defaults.get("patience", 10),
        clip_seconds=args.clip_seconds, augment=not args.no_augment,
        balance=args.balance, run_dir=args.run_dir, export=args.export,
        strategy=args.strategy, seed=args.seed, deterministic=args.deterministic,
        overrides=_pairs(args.set, "--set"), spec_overrides=_pairs(args.spec, "--spec"),
        cpu_devices=args.cpu_devices, speaker_norm=args.speaker_norm,
        speaker_groups=args.speaker_groups, checkpoint=args.checkpoint)


def _model_defaults(name: str) -> dict:
    """The training defaults a model registers (e.g. a linear head's learning rate); {} for
    an unknown name, which train() reports."""
    from zoo.models.registry import UnknownModelError, get_entry

    try:
        return dict(get_entry(name).train_defaults)
    except UnknownModelError:
        return {}


def _pairs(items, flag) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv=None) -> int:
    quiet_tensorflow()  # before anything imports keras, so start-up noise stays hidden
    from pipelines.records.build import BuildError
    from pipelines.features.spec import SpecError
    from pipelines.encoders.whisper_checkpoint import WhisperCheckpointError
    from pipelines.encoders.ssl import CheckpointError
    from pipelines.records.tfrecord import SchemaError
    from zoo.models.registry import UnknownModelError

    try:
        config = parse_args(argv)
        train(config)
    except (TrainError, SchemaError, SpecError, BuildError, UnknownModelError,
            CheckpointError, WhisperCheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command (same --run-dir) to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
