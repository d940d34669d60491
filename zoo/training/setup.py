"""What every trainer shares before the training loop (zoo.train, zoo.training.ssl,
zoo.training.finetune; zoo.refit_head checks data with it): the run configuration, one-line errors,
the bundled demo set, run folders, where exports go, package versions, data checks, the
tf.distribute strategy and the run's config.json / versions.json / TensorBoard hparams. No TensorFlow import at module level."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from pipelines.common.tfenv import quiet_tensorflow

DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


class TrainError(RuntimeError):
    """A problem the user can fix; printed as one line."""


@dataclasses.dataclass
class TrainConfig:
    model: str
    data: str | None = None
    epochs: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    patience: int = 10
    clip_seconds: float = 3.0
    augment: bool = True
    balance: str = "corpus"
    run_dir: str | None = None
    export: str | None = None
    strategy: str = "default"
    seed: int = 0
    deterministic: bool = False
    overrides: dict = dataclasses.field(default_factory=dict)
    spec_overrides: dict = dataclasses.field(default_factory=dict)
    cpu_devices: int = 0
    speaker_norm: float = 0.0
    speaker_groups: int = 0
    checkpoint: str | None = None

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (30 if self.data is None else 40)


# ---------------------------------------------------------------- data and run folder

def demo_data(out: Path = Path("tfrecords/demo")) -> Path:
    """Build (once) the TFRecord set of the bundled sample; returns its folder."""
    from pipelines.records.build import build

    build([f"ravdess={DEMO_DIR / 'ravdess'}"], out, validation=0.15, test=0.15,
          progress=False)
    return out


def resolve_run_dir(config: TrainConfig, data: Path) -> Path:
    """Explicit --run-dir: use it (resume if unfinished; refuse if finished). Default: the
    first of runs/<model>-<data>, -2, -3, ... that is new or unfinished."""
    if config.run_dir:
        run = Path(config.run_dir)
        if (run / "metrics.json").exists():
            raise TrainError(f"{run} holds a finished run; choose another --run-dir")
        return run
    base = Path("runs") / f"{config.model}-{data.name}"
    for i in range(1, 1000):
        run = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not (run / "metrics.json").exists():
            return run
    raise TrainError(f"too many runs under {base}")


def seed_run(config: TrainConfig, set_random_seed) -> None:
    """The run's seed through `set_random_seed` (Keras' or, for the Hugging Face models,
    tf_keras') and, with --deterministic, TensorFlow's op determinism."""
    set_random_seed(config.seed)
    if config.deterministic:
        quiet_tensorflow().config.experimental.enable_op_determinism()


def export_base(config: TrainConfig, run: Path) -> Path:
    """Where the run's SavedModel goes: --export; else savedmodels/, or the run folder's own
    savedmodels/ for the bundled demo (no --data), so a demo never adds a shipped version."""
    if config.export:
        return Path(config.export)
    return run / "savedmodels" if config.data is None else Path("savedmodels")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("tensorflow", "keras", "tensorboard", "numpy", "pandas", "scikit-learn",
                 "librosa", "tensorflow-io", "transformers", "tf-keras", "tf-keras-vis"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def check_data(tfset, splits=("train", "validation")) -> None:
    """One-line errors for a set that cannot train a classifier."""
    for split in splits:
        if tfset.examples(split) == 0:
            raise TrainError(f"{tfset.folder}: split {split!r} is empty (too few speakers? "
                             "build with other --validation/--test shares)")
    counts = tfset.class_counts("train")
    missing = [label for label in tfset.labels if not counts.get(label)]
    if missing:
        raise TrainError(f"{tfset.folder}: no training examples of {', '.join(missing)}")


# ---------------------------------------------------------------- strategy

def make_strategy(kind: str, cpu_devices: int = 0):
    """default | mirrored (all local GPUs, else all logical CPUs) | multiworker (TF_CONFIG)."""
    tf = quiet_tensorflow()
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainError("--strategy multiworker needs the TF_CONFIG environment variable "
                             "(cluster and task) on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainError(f"unknown strategy {kind!r}")


def worker_role(strategy) -> tuple[int, int, bool]:
    """(number of input pipelines, this worker's index, is chief) for a strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 1, 0, True
    cluster = resolver.cluster_spec().as_dict()
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in cluster
    index = task_id + (1 if has_chief and task_type == "worker" else 0)
    chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
    return workers, index, chief


def write_run_files(run: Path, config: TrainConfig, labels, tfset, parameters: int,
                    extra: dict) -> None:
    from pipelines.common.io import write_json_atomic

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
