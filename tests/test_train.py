"""zoo.train end to end on the 98-clip demo sample with tiny models: the run folder and export a
finished run leaves, TensorBoard events, resuming an interrupted run, MirroredStrategy on two
logical CPU devices, MultiWorkerMirroredStrategy with two local workers (slow), and one-line
errors for bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DEMO, REPO, TINY, tiny_flags
from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from zoo.models.registry import list_models  # noqa: E402
from zoo.training.train import main  # noqa: E402

REPORT_KEYS = {"ua", "wa", "macro_f1", "n", "per_class", "per_corpus", "confusion", "labels"}


def train_argv(data, run, export, *extra, model="mfcc_cnn", overrides=TINY, epochs=1):
    return ["--model", model, "--data", str(data), "--epochs", str(epochs),
            *tiny_flags(overrides), "--run-dir", str(run), "--export", str(export), *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------- a finished run

def test_run_folder_holds_the_record_of_the_run(tiny_run, demo_set):
    run, metrics = tiny_run["run"], tiny_run["metrics"]
    for name in ("config.json", "feature_spec.json", "versions.json", "history.jsonl",
                 "metrics.json", "predictions.csv", "confusion.png", "model.keras"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists(), "a finished run keeps no BackupAndRestore state"

    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "mfcc_cnn" and config["epochs"] == 1
    assert config["overrides"] == TINY and config["data"] == str(demo_set)
    labels = config["labels"]
    assert labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    spec = json.loads((run / "feature_spec.json").read_text())
    assert spec["kind"] == "mfcc" and spec["trim_db"] == 40.0
    versions = json.loads((run / "versions.json").read_text())
    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__

    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1]
    assert {"loss", "accuracy", "val_loss", "val_ua", "val_wa", "val_macro_f1",
            "learning_rate"} <= set(history[0])

    written = json.loads((run / "metrics.json").read_text())
    assert written["export"] == metrics["export"]
    for split, n in (("validation", 14), ("test", 14), ("train_eval", 70)):
        assert REPORT_KEYS <= set(written[split]), split
        assert written[split]["n"] == n
        assert set(written[split]["per_corpus"]) == {"ravdess"}
        assert np.asarray(written[split]["confusion"]).sum() == n
        assert 0.0 <= written[split]["ua"] <= 1.0
    assert written["epochs_run"] == 1 and written["best_epoch"] == 1
    check = written["batchnorm_check"]
    assert {"train_accuracy_during_fit", "train_accuracy_inference", "gap", "ok"} <= set(check)
    assert check["train_accuracy_inference"] == written["train_eval"]["wa"]

    pred = pd.read_csv(run / "predictions.csv")
    assert len(pred) == 28 and set(pred["split"]) == {"validation", "test"}
    assert {"id", "speaker", "label", "pred", "original_label"} <= set(pred.columns)
    probs = pred[[f"p_{name}" for name in labels]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs.argmax(axis=1) == pred["pred"]).all()
    test = pred[pred["split"] == "test"]
    assert (test["label"] == test["pred"]).mean() == pytest.approx(written["test"]["wa"])

    assert (run / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = keras.models.load_model(run / "model.keras")
    assert model.name == "mfcc_cnn" and model.output_shape == (None, len(labels))


def _events(folder: Path) -> dict[str, set[str]]:
    """tag -> plugin names, over every event file in folder."""
    tags: dict[str, set[str]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(value.metadata.plugin_data.plugin_name)
    return tags


def test_tensorboard_event_files(tiny_run):
    tb = tiny_run["run"] / "tb"
    for sub in ("train", "validation", "hparams"):
        assert list((tb / sub).glob("events.out.tfevents.*")), sub
    train = _events(tb / "train")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    validation = _events(tb / "validation")
    assert {"epoch_loss", "epoch_ua", "epoch_wa", "epoch_macro_f1"} <= set(validation)
    assert validation["confusion_matrix"] == {"images"}
    assert _events(tb / "hparams")


def test_export_folder(tiny_run):
    version = tiny_run["export"]
    assert version.name == "1" and version.parent.name == "mfcc_cnn"
    for name in ("saved_model.pb", "assets/labels.txt", "assets/feature_spec.json",
                 "model_card.md", "model.keras", "zoo.json"):
        assert (version / name).is_file(), name
    config = json.loads((tiny_run["run"] / "config.json").read_text())
    assert (version / "assets" / "labels.txt").read_text().split() == config["labels"]
    assert json.loads((version / "assets" / "feature_spec.json").read_text()) == \
        json.loads((tiny_run["run"] / "feature_spec.json").read_text())
    card = (version / "model_card.md").read_text()
    assert card.startswith("# mfcc_cnn") and "speaker-independent" in card
    info = json.loads((version / "zoo.json").read_text())
    assert info["signatures"] == ["serving_default", "serving_with_length", "serving_with_stats"]
    assert info["metrics"]["test"]["n"] == 14


@pytest.mark.slow
def test_crnn_family_trains(demo_set, tmp_path):
    overrides = {"filters": [4, 4, 4], "lstm_units": 4, "attention_units": 4, "head_units": 8}
    argv = train_argv(demo_set, tmp_path / "run", tmp_path / "savedmodels",
                      model="mfcc_crnn_attn", overrides=overrides)
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 14 and metrics["model"] == "mfcc_crnn_attn"
    assert (tmp_path / "savedmodels" / "mfcc_crnn_attn" / "1" / "saved_model.pb").is_file()


# ---------------------------------------------------------------- resume

def test_interrupted_run_resumes_where_it_stopped(demo_set, tmp_path, monkeypatch, capsys):
    from zoo.training.callbacks import InterruptAfterEpoch, ResumeState

    seen = {}
    interrupt = InterruptAfterEpoch.on_epoch_end
    resume = ResumeState.on_train_begin

    def record_at_interrupt(self, epoch, logs=None):
        seen["interrupted"] = [np.array(w) for w in self.model.weights]
        seen["iterations_interrupted"] = int(self.model.optimizer.iterations)
        interrupt(self, epoch, logs)

    def record_at_resume(self, logs=None):
        resume(self, logs)  # runs after BackupAndRestore.on_train_begin restored the state
        seen["resumed"] = [np.array(w) for w in self.model.weights]
        seen["iterations_resumed"] = int(self.model.optimizer.iterations)
        seen["initial_epoch"] = self.resumed_at

    monkeypatch.setattr(InterruptAfterEpoch, "on_epoch_end", record_at_interrupt)
    monkeypatch.setattr(ResumeState, "on_train_begin", record_at_resume)
    run, export = tmp_path / "run", tmp_path / "savedmodels"
    argv = train_argv(demo_set, run, export, epochs=3)

    monkeypatch.setenv("ZOO_INTERRUPT_AFTER_EPOCH", "1")
    assert main(argv) == 130
    assert "run the same command (same --run-dir) to resume" in capsys.readouterr().err
    first = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in first] == [1]
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert not (run / "metrics.json").exists() and not export.exists()
    steps = -(-70 // 32)
    assert seen["iterations_interrupted"] == steps

    monkeypatch.delenv("ZOO_INTERRUPT_AFTER_EPOCH")
    assert main(argv) == 0
    assert seen["initial_epoch"] == 1
    assert seen["iterations_resumed"] == steps, "optimizer state not restored"
    assert len(seen["resumed"]) == len(seen["interrupted"])
    for restored, saved in zip(seen["resumed"], seen["interrupted"]):
        np.testing.assert_array_equal(restored, saved)

    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0] == first[0]
    # The learning rate follows one warm-up + cosine schedule over 3 epochs: the resumed
    # epochs continue it (a restart would log epoch 1's rate again).
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=1e-4, decay_steps=3 * steps, warmup_target=1e-3,
        warmup_steps=steps, alpha=0.01)
    for h in history:
        assert h["learning_rate"] == pytest.approx(float(schedule(h["epoch"] * steps)), rel=1e-5)

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    assert metrics["best_epoch"] == max(history, key=lambda h: h["val_ua"])["epoch"]
    assert not (run / "backup").exists()
    assert (export / "mfcc_cnn" / "1" / "saved_model.pb").is_file()


def test_finished_run_dir_is_refused(tiny_run, demo_set, tmp_path, capsys):
    argv = train_argv(demo_set, tiny_run["run"], tmp_path / "savedmodels")
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(tiny_run["run"]) in err and "finished run" in err


# ---------------------------------------------------------------- tf.distribute

def _train_process(argv, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "zoo.train", *argv], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


def test_mirrored_strategy_on_two_logical_cpus(demo_set, tmp_path):
    """Logical devices must be set before TensorFlow starts: a fresh process."""
    argv = train_argv(demo_set, tmp_path / "run", tmp_path / "savedmodels",
                      "--strategy", "mirrored", "--cpu-devices", "2")
    proc = _train_process(argv)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 14
    assert (tmp_path / "savedmodels" / "mfcc_cnn" / "1" / "saved_model.pb").is_file()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _epoch_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "val_ua" in line and "step" in line]


@pytest.mark.slow
def test_multiworker_strategy_with_two_local_workers(demo_set, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    run, export = tmp_path / "run", tmp_path / "savedmodels"
    argv = train_argv(demo_set, run, export, "--strategy", "multiworker", epochs=2)
    procs = [_train_process(argv, env={"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"worker {i}:\n{log[-3000:]}"
        assert "CollectiveAllReduceStrategy with 2 replica(s)" in log
    # Workers train one model: same logged training metrics and validation scores per epoch
    # (BatchNorm statistics are averaged across workers), hence the same early-stopping calls.
    chief_epochs, other_epochs = _epoch_lines(logs[0]), _epoch_lines(logs[1])
    assert len(chief_epochs) == 2
    strip = [line.split("step - ", 1)[1] for line in chief_epochs + other_epochs]
    assert strip[:2] == strip[2:]
    # 70 clips, global batch 32: 3 steps an epoch, as on one worker.
    assert all(line.startswith("3/3 ") for line in chief_epochs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["test"]["n"] == 14
    assert (export / "mfcc_cnn" / "1" / "saved_model.pb").is_file()
    assert not (run / ".worker-1" / "metrics.json").exists()


# ---------------------------------------------------------------- bad input

def test_unknown_model_lists_the_available_ones(demo_set, tmp_path, capsys):
    assert main(["--model", "mfcc_cnnn", "--data", str(demo_set),
                 "--run-dir", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert "unknown model 'mfcc_cnnn'" in err and "did you mean 'mfcc_cnn'" in err
    for name in list_models():
        assert name in err
    assert not (tmp_path / "run").exists()


def test_wrong_schema_version(demo_set, tmp_path, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    schema = json.loads((demo_set / "schema.json").read_text())
    schema["schema_version"] = 99
    (folder / "schema.json").write_text(json.dumps(schema))
    assert main(train_argv(folder, tmp_path / "run", tmp_path / "savedmodels")) == 2
    err = one_line_error(capsys)
    assert "schema version 99" in err and "--force" in err


def _demo_subset(folder: Path, actors, drop=lambda name: False) -> Path:
    """A RAVDESS tree of links to some demo actors' clips (all but those `drop` picks)."""
    for actor in actors:
        (folder / actor).mkdir(parents=True)
        for clip in sorted((DEMO / actor).glob("*.flac")):
            if not drop(clip.name):
                (folder / actor / clip.name).symlink_to(clip)
    return folder


def test_empty_validation_split(tmp_path, capsys):
    from pipelines.records.build import build

    corpus = _demo_subset(tmp_path / "ravdess", ["Actor_01", "Actor_02"])
    data = tmp_path / "two_actors"
    # 2 speakers x 0.1 rounds to no validation (and no test) speaker
    schema = build([f"ravdess={corpus}"], data, validation=0.1, test=0.1, progress=False,
                   workers=1)
    assert schema["splits"]["validation"]["examples"] == 0
    assert main(train_argv(data, tmp_path / "run", tmp_path / "savedmodels")) == 2
    err = one_line_error(capsys)
    assert "split 'validation' is empty" in err


def test_class_missing_from_training_split(tmp_path, capsys):
    from pipelines.records.build import build
    from pipelines.corpora import read_corpora
    from pipelines.records.splits import speaker_split

    actors = ["Actor_01", "Actor_02", "Actor_03"]
    rows, _, _ = read_corpora([f"ravdess={_demo_subset(tmp_path / 'all', actors)}"])
    split = speaker_split(rows, validation=0.34, test=0.0)
    train_actors = {f"Actor_{int(a):02d}" for a in rows.loc[split == "train", "actor"]}
    assert len(train_actors) == 2
    # RAVDESS names: modality-channel-EMOTION-...; 07 is disgust. Held-out actor keeps it.
    corpus = tmp_path / "ravdess"
    for actor in actors:
        _demo_subset(corpus, [actor], drop=lambda name, a=actor: a in train_actors
                     and name.split("-")[2] == "07")
    data = tmp_path / "no_disgust"
    schema = build([f"ravdess={corpus}"], data, validation=0.34, test=0.0, progress=False,
                   workers=1)
    assert "disgust" in schema["labels"] and "disgust" not in schema["splits"]["train"]["emotions"]
    assert main(train_argv(data, tmp_path / "run", tmp_path / "savedmodels")) == 2
    err = one_line_error(capsys)
    assert "no training examples of disgust" in err


def test_speaker_norm_needs_normalised_features(demo_set, tmp_path, capsys):
    assert main(train_argv(demo_set, tmp_path / "run", tmp_path / "savedmodels",
                           "--speaker-norm", "0.5", "--spec", 'normalization="none"')) == 2
    assert "normalization 'none'" in one_line_error(capsys)
