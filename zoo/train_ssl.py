"""Training of the self-supervised-speech models; zoo.train.train() hands every model whose
input is not 'features' to train_ssl(config), so the command line stays the same:

    python -m zoo.train --model hubert_cnn --data tfrecords/full/embeddings/hubert-layer12
    python -m zoo.train --model wav2vec2_finetune --checkpoint ckpt/wav2vec2-base \
        --data tfrecords/full

Embedding heads (Keras 3) train with Keras fit and the zoo's callbacks on an embedding set
(pipelines.embeddings); waveform models (the fine-tuned encoder, a tf_keras model) use the
loop in zoo.train_finetune. Both leave the run folder zoo.train leaves (config.json,
versions.json, history.jsonl, metrics.json, predictions.csv, confusion.png, tb/) and export a
SavedModel (zoo.export_ssl).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.tfenv import quiet_tensorflow
from zoo.train_setup import (TrainConfig, TrainError, check_data, export_base,
                             package_versions, resolve_run_dir)
from zoo.train_report import finish_run, headline, prediction_rows


def train_ssl(config: TrainConfig) -> dict:
    from zoo.registry import get_entry

    entry = get_entry(config.model)
    if config.speaker_norm > 0:
        raise TrainError("--speaker-norm applies to feature models only")
    if entry.input == "waveform":
        from zoo.train_finetune import train_finetune

        return train_finetune(config)
    return train_head(config, entry)


# ---------------------------------------------------------------- embedding heads

def open_head_data(config: TrainConfig, entry):
    """(embedding set, input width) for a head, or a one-line TrainError."""
    from pipelines.embedding_set import open_embedding_set

    if not config.data:
        raise TrainError(f"{config.model} trains on SSL embeddings: pass --data <embedding set> "
                         "made by python -m pipelines.embeddings (docs/ssl.md)")
    eset = open_embedding_set(config.data)
    if entry.input == "frames" and not eset.has_frames:
        raise TrainError(f"{config.model} takes frame sequences, but {eset.folder} holds pooled "
                         "vectors only; extract with --frames")
    dim = eset.input_dim(entry.input)
    wanted = config.overrides.get("dim")
    if wanted is not None and int(wanted) != dim:
        what = "vectors" if entry.input == "embedding" else "frames"
        raise TrainError(f"{config.model} was set up for {wanted}-dim input (--set dim), but "
                         f"{eset.folder} holds {dim}-dim {what} ({eset.describe()})")
    return eset, dim


def train_head(config: TrainConfig, entry) -> dict:
    tf = quiet_tensorflow()
    import keras

    from pipelines.embedding_set import class_weights, make_dataset
    from zoo.callbacks import ResumeState, ValidationMetrics
    from zoo.models.ssl_heads import HeadConfigError
    from zoo.registry import build_model
    from zoo.train_setup import make_strategy

    eset, dim = open_head_data(config, entry)
    if config.strategy == "multiworker":
        raise TrainError("embedding heads train with --strategy default or mirrored")
    strategy = make_strategy(config.strategy, config.cpu_devices)
    check_data(eset)
    data = Path(config.data)
    labels = eset.labels
    run = resolve_run_dir(config, data)
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    epochs = config.resolved_epochs()
    print(f"model {config.model} on {data} ({eset.describe()}; "
          f"{eset.examples('train')} train / {eset.examples('validation')} validation clips), "
          f"{epochs} epochs, run folder {run}")
    train_ds = make_dataset(data, "train", entry.input, config.batch_size, training=True,
                            seed=config.seed).repeat()
    val_ds = make_dataset(data, "validation", entry.input, config.batch_size)
    steps = -(-eset.examples("train") // config.batch_size)
    overrides = {k: v for k, v in config.overrides.items() if k != "dim"}
    with strategy.scope():
        try:
            model = build_model(config.model, len(labels), dim=dim, **overrides)
        except (HeadConfigError, TypeError) as err:
            raise TrainError(f"{config.model}: {err}") from None
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr / 10, decay_steps=max(epochs * steps, 1),
            warmup_target=config.lr, warmup_steps=config.warmup_epochs * steps, alpha=0.01)
        model.compile(optimizer=keras.optimizers.AdamW(schedule,
                                                       weight_decay=config.weight_decay),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    write_run_files(run, config, labels, eset, int(model.count_params()),
                    {"embedding": eset.embedding, "input": entry.input, "input_dim": dim})
    best_path = run / "best.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(best_path, monitor="val_ua", mode="max",
                                                 save_best_only=True, save_weights_only=True)
    stopper = keras.callbacks.EarlyStopping(monitor="val_ua", mode="max",
                                            patience=config.patience)
    callbacks = [ValidationMetrics(val_ds, labels, run, run / "tb"),
                 keras.callbacks.BackupAndRestore(str(run / "backup")),
                 checkpoint, stopper,
                 keras.callbacks.TensorBoard(str(run / "tb"), write_graph=False),
                 keras.callbacks.TerminateOnNaN(),
                 ResumeState(run, checkpoint, stopper)]
    write_hparams(run / "tb", config, {"input": entry.input, "input_dim": dim,
                                       "layer": str(eset.embedding["layer"]),
                                       "encoder": eset.embedding["encoder"]})
    weights = class_weights(eset) if config.balance != "none" else None
    started = time.perf_counter()
    model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, class_weight=weights,
              callbacks=callbacks, shuffle=False,  # the dataset shuffles itself
              verbose=2 if not sys.stdout.isatty() else 1)
    seconds = time.perf_counter() - started
    if not best_path.exists():
        raise TrainError("no epoch finished with a validation score; nothing to export")
    model.load_weights(best_path)

    def predict(split):
        ds = make_dataset(data, split, entry.input, config.batch_size, with_meta=True)
        return prediction_rows(((np.asarray(model(x, training=False)), y, meta)
                                for x, y, meta in ds), split, labels)

    def save_and_export(metrics):
        from zoo.export_ssl import export_embedding_head
        from zoo.model_card import ssl_model_card

        model.save(run / "model.keras")
        e = eset.embedding
        shape = "[batch, dim]" if entry.input == "embedding" else "[batch, time, dim]"
        card = ssl_model_card(config, eset, metrics, [
            f"`serving_default`: `{entry.input}` float32 {shape} with dim = {dim}: "
            f"{e['encoder']} hidden state {e['layer']} of checkpoint "
            f"{e['checkpoint_sha256'][:12]}"
            + (", mean and standard deviation over the clip's frames"
               if entry.input == "embedding" else ", zero-padded frames")
            + " (python -m pipelines.embeddings; the same checkpoint and layer are needed).",
            "Returns `probabilities` float32 [batch, classes] and `label` string [batch]."])
        return export_embedding_head(model, labels, export_base(config, run), config.model, entry.input, dim,
                                     e, card, {"metrics": headline(metrics), "run": str(run),
                                               "data": str(data)})

    return finish_run(config, labels, data, eset, run, seconds, predict, save_and_export)


# ---------------------------------------------------------------- shared by both kinds

def write_run_files(run: Path, config: TrainConfig, labels, tfset, parameters: int,
                    extra: dict) -> None:
    from pipelines.io import write_json_atomic

    resolved = {**dataclasses.asdict(config), "epochs": config.resolved_epochs(),
                "data": str(tfset.folder), "labels": labels, "parameters": parameters, **extra}
    write_json_atomic(run / "config.json", resolved)
    write_json_atomic(run / "versions.json", package_versions())


def write_hparams(tb_dir: Path, config: TrainConfig, extra: dict) -> None:
    tf = quiet_tensorflow()
    from tensorboard.plugins.hparams import api as hp

    values = {"model": config.model, "lr": config.lr, "batch_size": config.batch_size,
              "weight_decay": config.weight_decay, "seed": config.seed, **extra}
    with tf.summary.create_file_writer(str(tb_dir / "hparams")).as_default():
        hp.hparams(values)
