"""Training callbacks: validation UA/WA/F1 every epoch (with a confusion image in TensorBoard),
the learning rate in the logs, and best-so-far state that survives a resumed run."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipelines.common.figures import summary_image
from zoo.evaluation.metrics import plot_confusion, report


def predict_batches(model: keras.Model, batches) -> np.ndarray:
    """Softmax outputs for a list of feature batches, inference mode."""
    outputs = [model(x, training=False) for x in batches]
    return np.concatenate([np.asarray(o) for o in outputs]) if outputs else np.zeros((0, 0))


class ValidationMetrics(keras.callbacks.Callback):
    """Adds val_loss, val_ua, val_wa, val_macro_f1 (and learning_rate) to the epoch logs.

    Put it first in the callback list: EarlyStopping, ModelCheckpoint and TensorBoard read the
    values it adds. The validation features are computed once (no augmentation in evaluation).
    Also appends each epoch to history.jsonl, which a resumed run reads back.
    """

    def __init__(self, dataset, labels: list[str], run_dir: Path, tensorboard_dir: Path | None,
                 write: bool = True):
        super().__init__()
        self.batches, ys = [], []
        for x, y in dataset:
            self.batches.append(x)
            ys.append(np.asarray(y))
        self.y_true = np.concatenate(ys)
        self.labels = labels
        self.history_path = Path(run_dir) / "history.jsonl"
        self.write = write
        self.writer = (tf.summary.create_file_writer(str(tensorboard_dir / "validation"))
                       if tensorboard_dir and write else None)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        probs = predict_batches(self.model, self.batches)
        pred = probs.argmax(axis=1)
        rep = report(self.y_true, pred, self.labels)
        picked = probs[np.arange(len(self.y_true)), self.y_true]
        logs["val_loss"] = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
        logs["val_ua"], logs["val_wa"], logs["val_macro_f1"] = rep["ua"], rep["wa"], \
            rep["macro_f1"]
        logs["learning_rate"] = current_learning_rate(self.model.optimizer)
        if not self.write:
            return
        if self.writer is not None:
            png = plot_confusion(rep["confusion"], self.labels,
                                 f"validation, epoch {epoch + 1}: UA {rep['ua']:.3f}")
            with self.writer.as_default(step=epoch):
                summary_image("confusion_matrix", png, epoch)
            self.writer.flush()
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")


def current_learning_rate(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))


def read_history(run_dir) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ResumeState(keras.callbacks.Callback):
    """Put after BackupAndRestore, ModelCheckpoint and EarlyStopping: when a run resumes, gives
    the last two the best val_ua and patience counter they had before the interruption, and
    drops history.jsonl records of epochs that were not backed up (they are trained again)."""

    def __init__(self, run_dir, checkpoint, early_stopping):
        super().__init__()
        self.run_dir, self.checkpoint, self.early_stopping = Path(run_dir), checkpoint, \
            early_stopping
        self.resumed_at = 0

    def on_train_begin(self, logs=None):
        done = int(getattr(self.model, "_initial_epoch", None) or 0)
        self.resumed_at = done
        history = [h for h in read_history(self.run_dir) if h["epoch"] <= done]
        path = self.run_dir / "history.jsonl"
        if path.exists():
            path.write_text("".join(json.dumps(h) + "\n" for h in history))
        if not history:
            return
        scores = [h["val_ua"] for h in history]
        best_at = int(np.argmax(scores))
        self.checkpoint.best = scores[best_at]
        self.early_stopping.best = scores[best_at]
        self.early_stopping.best_epoch = history[best_at]["epoch"] - 1
        self.early_stopping.wait = len(history) - 1 - best_at


class InterruptAfterEpoch(keras.callbacks.Callback):
    """Test hook: raise KeyboardInterrupt at the end of epoch `epoch` (1-based), as if the
    run were killed there. Put it last, so that BackupAndRestore has saved that epoch.
    zoo.train adds it when the environment variable ZOO_INTERRUPT_AFTER_EPOCH is set."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f"ZOO_INTERRUPT_AFTER_EPOCH={self.epoch}")


class AverageBatchNormStatistics(keras.callbacks.Callback):
    """Multi-worker training: average the BatchNorm moving statistics across replicas at the
    end of each epoch. Keras updates them per replica (they are not synchronised like the
    trained weights), so without this each worker would validate a different model and could
    take a different early-stopping decision, leaving the others waiting. Put it first."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy
        self._average = None

    def on_train_begin(self, logs=None):
        weights = self.model.non_trainable_weights  # BatchNorm statistics (no seeds, metrics)
        strategy = self.strategy

        def average():
            local = strategy.run(lambda: [tf.identity(w.value) for w in weights])
            for w, value in zip(weights, local):
                w.assign(strategy.reduce("MEAN", value, axis=None))

        self._average = tf.function(average)

    def on_epoch_end(self, epoch, logs=None):
        if self.model.non_trainable_weights:
            self._average()
