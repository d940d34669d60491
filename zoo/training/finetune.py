"""The training loop of waveform-input SSL models (wav2vec2_finetune), run by zoo.training.ssl.

The model is a tf_keras model (the transformers TF classes are), so Keras 3's fit and callbacks
do not apply; this loop does what they do in zoo.train: warm-up + cosine AdamW (the encoder's
trained layers at `encoder_lr_scale` times the head's rate), class weights, random crops and
waveform augmentation, validation UA/WA/F1 per epoch into history.jsonl and TensorBoard, the
best epoch by validation UA kept, early stopping, and a resumable state (model, optimisers,
epoch, best score) saved after every epoch in <run>/backup.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.training.setup import (TrainConfig, TrainError, check_data, demo_data, export_base,
                             resolve_run_dir, seed_run, write_hparams, write_run_files)


def raw_spec():
    """Waveforms as stored: no DC removal, no trimming (the encoder normalises them)."""
    from pipelines.features.spec import FeatureSpec

    return FeatureSpec(remove_dc=False, trim_db=None)


def waveform_augment(enabled: bool):
    from pipelines.audio.augment import Augment

    if not enabled:
        return Augment.none()
    # gain is a no-op after the encoder's per-clip normalisation; no spectrogram masks
    return Augment(gain_db=0.0, time_masks=0, freq_masks=0)


def build_for_training(config: TrainConfig, num_classes: int):
    from zoo.models.wav2vec2_finetune import FinetuneConfigError
    from zoo.models.registry import build_model

    if not config.checkpoint:
        raise TrainError(f"{config.model} needs --checkpoint DIR or a hub id such as "
                         "facebook/wav2vec2-base (docs/ssl.md)")
    try:
        return build_model(config.model, num_classes, checkpoint=config.checkpoint,
                           **config.overrides)
    except (FinetuneConfigError, TypeError) as err:
        raise TrainError(f"{config.model}: {err}") from None


class Trainer:
    """One-step training and inference functions with two AdamW optimisers."""

    def __init__(self, model, config: TrainConfig, steps: int, class_weights: dict | None,
                 num_classes: int):
        import tensorflow as tf
        import tf_keras

        self.model = model
        epochs = config.resolved_epochs()

        def schedule(peak):
            return tf_keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=peak / 10, decay_steps=max(epochs * steps, 1),
                warmup_target=peak, warmup_steps=config.warmup_epochs * steps, alpha=0.01)

        self.head_opt = tf_keras.optimizers.AdamW(schedule(config.lr),
                                                  weight_decay=config.weight_decay)
        self.encoder_opt = tf_keras.optimizers.AdamW(
            schedule(config.lr * model.encoder_lr_scale), weight_decay=config.weight_decay)
        self.encoder_vars = model.encoder_variables()
        self.head_vars = model.head_variables()
        self.head_opt.build(self.head_vars)
        self.encoder_opt.build(self.encoder_vars)
        table = np.ones(num_classes, np.float32)
        for index, weight in (class_weights or {}).items():
            table[index] = weight
        self.class_weights = tf.constant(table)
        n = len(self.encoder_vars)

        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                picked = tf.gather(probs, y, batch_dims=1)
                w = tf.gather(self.class_weights, y)
                loss = -tf.reduce_sum(w * tf.math.log(tf.maximum(picked, 1e-7))) / \
                    tf.reduce_sum(w)
            grads = tape.gradient(loss, self.encoder_vars + self.head_vars)
            self.encoder_opt.apply_gradients(zip(grads[:n], self.encoder_vars))
            self.head_opt.apply_gradients(zip(grads[n:], self.head_vars))
            correct = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y),
                              tf.float32)
            return loss, tf.reduce_mean(correct)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def infer(waveform, length):
            return model({"waveform": waveform, "length": length}, training=False)

        self.train_step, self.infer = train_step, infer

    def learning_rates(self) -> tuple[float, float]:
        return (float(self.head_opt.learning_rate.numpy()),
                float(self.encoder_opt.learning_rate.numpy()))


def evaluate_batches(trainer: Trainer, batches, labels) -> dict:
    from zoo.evaluation.metrics import report

    probs = np.concatenate([trainer.infer(x["waveform"], x["length"]).numpy()
                            for x, _ in batches])
    y = np.concatenate([np.asarray(t) for _, t in batches])
    rep = report(y, probs.argmax(axis=1), labels)
    picked = probs[np.arange(len(y)), y]
    return {"val_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
            "val_ua": rep["ua"], "val_wa": rep["wa"], "val_macro_f1": rep["macro_f1"]}


def write_weights(model, prefix: Path) -> None:
    """A tf.train.Checkpoint of the model at `prefix`, replaced only once fully written."""
    import tensorflow as tf

    tmp = prefix.with_name(prefix.name + f".tmp-{os.getpid()}")
    tf.train.Checkpoint(model=model).write(str(tmp))
    for part in sorted(tmp.parent.glob(tmp.name + ".*"), key=lambda p: p.suffix == ".index"):
        os.replace(part, prefix.parent / (prefix.name + part.name[len(tmp.name):]))


def train_finetune(config: TrainConfig) -> dict:
    tf = quiet_tensorflow()
    from pipelines.records.dataset import class_weights, make_dataset
    from pipelines.records.tfrecord import open_set
    from zoo.training.callbacks import read_history
    from zoo.training.report import finish_run, headline, prediction_rows

    if config.strategy != "default":
        raise TrainError(f"{config.model} trains with --strategy default (one device)")
    if not config.checkpoint:
        raise TrainError(f"{config.model} needs --checkpoint DIR or a hub id such as "
                         "facebook/wav2vec2-base (docs/ssl.md)")
    from pipelines.encoders.ssl import inspect_checkpoint

    # a missing folder or unknown hub id stops here, before a run folder is made (quiet: the
    # model's build reports where the checkpoint is)
    inspect_checkpoint(config.checkpoint, config.overrides.get("encoder", "wav2vec2"),
                       progress=None)
    data = Path(config.data) if config.data else demo_data()
    tfset = open_set(data)
    check_data(tfset)
    labels = tfset.labels
    run = resolve_run_dir(config, data)
    run.mkdir(parents=True, exist_ok=True)
    import tf_keras

    seed_run(config, tf_keras.utils.set_random_seed)
    model = build_for_training(config, len(labels))
    epochs = config.resolved_epochs()
    info = model.checkpoint_info
    print(f"model {config.model} on {data} ({tfset.examples('train')} train / "
          f"{tfset.examples('validation')} validation clips), encoder {info['checkpoint']} "
          f"with the top {model.trainable_layers} of {info['num_layers']} layers trained, "
          f"{epochs} epochs, run folder {run}")
    spec = raw_spec()
    train_ds = make_dataset(data, "train", spec, config.batch_size, training=True,
                            clip_seconds=config.clip_seconds,
                            augment=waveform_augment(config.augment), seed=config.seed,
                            output="waveform").repeat()
    val_batches = list(make_dataset(data, "validation", spec, config.batch_size,
                                    output="waveform"))
    steps = -(-tfset.examples("train") // config.batch_size)
    weights = class_weights(data) if config.balance != "none" else None
    trainer = Trainer(model, config, steps, weights, len(labels))
    parameters = int(sum(np.prod(v.shape) for v in model.weights))
    trained = int(sum(np.prod(v.shape) for v in trainer.encoder_vars + trainer.head_vars))
    write_run_files(run, config, labels, tfset, parameters, {
        "input": "waveform", "encoder": info, "trained_parameters": trained})
    write_hparams(run / "tb", config, {"input": "waveform",
                                       "trainable_layers": model.trainable_layers})

    state = {"epoch": tf.Variable(0, dtype=tf.int64), "best": tf.Variable(-1.0),
             "wait": tf.Variable(0, dtype=tf.int64)}
    backup = tf.train.Checkpoint(model=model, encoder_opt=trainer.encoder_opt,
                                 head_opt=trainer.head_opt, **state)
    manager = tf.train.CheckpointManager(backup, str(run / "backup"), max_to_keep=1)
    if manager.latest_checkpoint:
        backup.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resumed after epoch {int(state['epoch'].numpy())}")
    done = int(state["epoch"].numpy())
    history_path = run / "history.jsonl"
    kept = [h for h in read_history(run) if h["epoch"] <= done]
    history_path.write_text("".join(json.dumps(h) + "\n" for h in kept))
    best_prefix = run / "best" / "weights"
    best_prefix.parent.mkdir(exist_ok=True)
    writers = {k: tf.summary.create_file_writer(str(run / "tb" / k))
               for k in ("train", "validation")}
    batches = iter(train_ds)
    started = time.perf_counter()
    verbose = sys.stdout.isatty()
    for epoch in range(done, epochs):
        if int(state["wait"].numpy()) >= config.patience:
            break
        t0 = time.perf_counter()
        losses, accs = [], []
        for step in range(steps):
            x, y = next(batches)
            loss, acc = trainer.train_step(x, y)
            losses.append(float(loss))
            accs.append(float(acc))
            if verbose:
                print(f"\repoch {epoch + 1} step {step + 1}/{steps} loss {np.mean(losses):.4f}",
                      end="", flush=True)
        head_lr, encoder_lr = trainer.learning_rates()
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                  "accuracy": float(np.mean(accs)),
                  **evaluate_batches(trainer, val_batches, labels),
                  "learning_rate": head_lr, "encoder_learning_rate": encoder_lr}
        with open(history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, writer in writers.items():
            with writer.as_default(step=epoch):
                for name, value in record.items():
                    if name != "epoch" and name.startswith("val_") == (key == "validation"):
                        tf.summary.scalar(name.removeprefix("val_"), value)
        print(("\r" if verbose else "") + f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}"
              f" accuracy {record['accuracy']:.3f} val_ua {record['val_ua']:.3f} "
              f"val_wa {record['val_wa']:.3f} ({time.perf_counter() - t0:.0f} s)")
        if record["val_ua"] > float(state["best"].numpy()):
            state["best"].assign(record["val_ua"])
            state["wait"].assign(0)
            write_weights(model, best_prefix)
        else:
            state["wait"].assign_add(1)
        state["epoch"].assign(epoch + 1)
        manager.save()
    seconds = time.perf_counter() - started
    if not Path(str(best_prefix) + ".index").exists():
        raise TrainError("no epoch finished with a validation score; nothing to export")
    tf.train.Checkpoint(model=model).read(str(best_prefix)).assert_existing_objects_matched()

    def predict(split):
        ds = make_dataset(data, split, spec, config.batch_size, output="waveform",
                          with_meta=True)
        return prediction_rows(((trainer.infer(x["waveform"], x["length"]).numpy(), y, meta)
                                for x, y, meta in ds), split, labels)

    def save_and_export(metrics):
        from pipelines.encoders.hub import hub_note
        from zoo.export.ssl import export_waveform_classifier
        from zoo.evaluation.model_card import ssl_model_card

        card = ssl_model_card(config, tfset, metrics, [
            "`serving_default`: `waveform` float32 [batch, samples], mono, 16 kHz, full scale "
            "1.0; `serving_with_length`: the same plus `length` int32 [batch] for zero-padded "
            "rows. Both return `probabilities` float32 [batch, classes] and `label` string "
            "[batch].",
            f"Inside the graph: {info['encoder']} encoder ({info['num_layers']} layers, "
            f"hidden {info['hidden_size']}, checkpoint {info['checkpoint_sha256'][:12]}"
            f"{hub_note(info.get('hub'))}; top "
            f"{model.trainable_layers} layers fine-tuned), waveform normalised per clip "
            f"(do_normalize {info['do_normalize']}), mean + std pooling of the last layer, "
            "dense head."])
        from zoo.export.reliability import reliability_from

        return export_waveform_classifier(
            model, labels, export_base(config, run), config.model, info,
            model.encoder_config_json, card,
            {"metrics": headline(metrics), "run": str(run), "data": str(data),
             "trainable_layers": model.trainable_layers},
            reliability=reliability_from(metrics))

    return finish_run(config, labels, data, tfset, run, seconds, predict, save_and_export)
