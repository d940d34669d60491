"""The short model card written beside every export."""

from __future__ import annotations

import datetime
import json

from pipelines.common.parallel import default_workers


def _fmt(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def model_card(config, spec, tfset, metrics: dict) -> str:
    lines = [
        f"# {config.model}",
        "",
        _trained_line(config, tfset, metrics),
        "",
        "## Input and output",
        "",
        "`serving_default`: `waveform` float32 [batch, samples], mono, 16 kHz, full scale 1.0.",
        "`serving_with_length`: the same plus `length` int32 [batch] for zero-padded rows.",
        "Both return `probabilities` float32 [batch, classes] and `label` string [batch].",
        "`serving_with_stats` also takes per-speaker feature statistics "
        + ("(kept for a uniform interface: with normalisation 'none' they are not used)."
           if spec.normalization == "none" else "(`zoo.evaluate --speaker-norm`)."),
        f"Labels (index order): {', '.join(tfset.schema['labels'])}.",
        "",
        *_speaker_norm_warning(config),
        *_speaker_groups_lines(config),
        f"Features computed inside the graph: {spec.kind}, {spec.channels} channels, "
        f"window {spec.win_length} / hop {spec.hop_length} samples, n_fft {spec.n_fft}, "
        f"trim {spec.trim_db} dB, DC removal {spec.remove_dc}, normalisation "
        f"{spec.normalization} (full FeatureSpec in assets/feature_spec.json).",
        "",
    ]
    if getattr(config, "speaker_groups", 0):
        return "\n".join(lines + embedding_results(tfset, metrics))
    return "\n".join(lines + data_and_results(tfset, metrics))


def _speaker_groups_lines(config) -> list[str]:
    groups = getattr(config, "speaker_groups", 0)
    if not groups:
        return []
    from zoo.training.embedding_heads import MIN_CLIPS

    return [f"**Trained with speaker groups of {groups} clips**: the network standardises its "
            "pooled embedding per speaker before its head. `serving_by_speaker` (`waveform`, "
            "`length`, `speaker` string [batch]) does that with the statistics of the clips in "
            "the request that carry the same speaker id: **send all of a speaker's clips in one "
            f"request, at least {MIN_CLIPS}**. `serving_default` and the other signatures "
            "classify one clip at a time with a linear head fitted afterwards on the "
            "un-standardised embeddings (L2 chosen by validation UA; zoo.json `speaker_head`). "
            + TWO_STEP_NOTE, ""]


def _speaker_norm_warning(config) -> list[str]:
    share = getattr(config, "speaker_norm", 0.0)
    if share >= 1.0:
        return ["**Trained on features normalised per speaker only: call `serving_with_stats` "
                "with the speaker's statistics.** `serving_default` normalises each clip by "
                "itself, which this model never saw in training; compare the two kinds of rows "
                "under Results.", ""]
    if share > 0:
        return [f"Trained with {100 * share:.0f}% of clips normalised per speaker and the rest "
                "per clip: both `serving_default` and `serving_with_stats` apply.", ""]
    return []


def ssl_model_card(config, tfset, metrics: dict, input_lines: list[str]) -> str:
    """The card of an SSL model (embedding head or fine-tuned encoder); input_lines describe
    what its serving signature takes."""
    lines = [f"# {config.model}", "", _trained_line(config, tfset, metrics), "",
             "## Input and output", "", *input_lines,
             f"Labels (index order): {', '.join(tfset.schema['labels'])}.", ""]
    return "\n".join(lines + data_and_results(tfset, metrics))


# TrainConfig field -> zoo.train flag, for the command line a card quotes
_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
          "weight_decay": "--weight-decay", "patience": "--patience",
          "clip_seconds": "--clip-seconds", "balance": "--balance", "seed": "--seed",
          "speaker_norm": "--speaker-norm", "speaker_groups": "--speaker-groups",
          "strategy": "--strategy"}


def training_flags(config) -> list[str]:
    """The zoo.train flags whose values differ from the defaults (so the quoted command
    reproduces the run); --checkpoint only when it is a hub id (a local path would not travel)."""
    import dataclasses

    from pipelines.encoders.hub import is_hub_id

    if not dataclasses.is_dataclass(config):
        return []
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    flags = [f"{flag} {getattr(config, name)}" for name, flag in _FLAGS.items()
             if name in defaults and getattr(config, name) != defaults[name]]
    if not getattr(config, "augment", True):
        flags.append("--no-augment")
    if getattr(config, "deterministic", False):
        flags.append("--deterministic")
    if is_hub_id(getattr(config, "checkpoint", None)):
        flags.append(f"--checkpoint {config.checkpoint}")
    return flags


def _trained_line(config, tfset, metrics: dict) -> str:
    def value(v) -> str:  # as typed on the command line (strings need no JSON quotes)
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    flags = training_flags(config)
    flags += [f"--set {k}={value(v)}" for k, v in (getattr(config, "overrides", None) or {}).items()]
    flags += [f"--spec {k}={value(v)}"
              for k, v in (getattr(config, "spec_overrides", None) or {}).items()]
    solver = metrics.get("solver") or {}
    grid = ", ".join(f"{t['l2']:g}" for t in solver.get("tried", []))
    how = (f"solved exactly: class-balanced logistic regression, L2 {solver['l2']:g} chosen by "
           f"validation UA from {grid}"
           if solver.get("kind") == "exact" else
           f"{metrics.get('epochs_run')} epochs, best epoch {metrics.get('best_epoch')}")
    return (f"Trained {datetime.date.today().isoformat()} with `python -m zoo.train --model "
            f"{' '.join([config.model, '--data', str(tfset.folder), *flags])}` "
            f"({how}, {metrics.get('train_seconds', 0) / 60:.1f} min on "
            f"{default_workers()} CPU cores).")


def _row(title: str, m: dict) -> str:
    return f"| {title} | {m['n']} | {_fmt(m['ua'])} | {_fmt(m['wa'])} | {_fmt(m['macro_f1'])} |"


def _result_rows(m: dict, title: str, prefix: str) -> list[str]:
    """One split's row, then its rows per corpus and without RAVDESS calm."""
    rows = [_row(title, m)]
    rows += [_row(f"{prefix}{corpus}", c) for corpus, c in m.get("per_corpus", {}).items()]
    if "without_calm" in m:
        rows.append(_row(f"{prefix}without RAVDESS calm", m["without_calm"]))
    return rows


SPEAKER_EMBEDDING_ROWS = "embeddings standardised per speaker"
TWO_STEP_NOTE = ("With many clips per speaker, `serving_embedding` (returns `embedding`) then "
                 "`serving_with_speaker_stats` on those embeddings with the speaker's mean and "
                 "standard deviation give the same answers in small requests "
                 "(docs/serving.md).")
SPEAKER_EMBEDDING_NOTE = (
    " Rows 'standardised per speaker' use each clip's embedding minus the mean, over the "
    "standard deviation, of all clips of its speaker (no labels): `serving_by_speaker`, "
    "`zoo.evaluate --speaker-norm`.")
SPEAKER_NORM_NOTE = (" Rows 'normalised per speaker' use statistics over all clips of each test "
                     "speaker (no labels): `serving_with_stats`, `zoo.evaluate --speaker-norm`.")


def data_and_results(tfset, metrics: dict, speaker_note: str = SPEAKER_NORM_NOTE,
                     speaker_rows: str = "features normalised per speaker") -> list[str]:
    """The Data, Results and Licence sections (lines). The per-speaker rows
    (metrics['speaker_norm'], when there are any) are titled '<split>, <speaker_rows>' and
    explained by speaker_note."""
    schema = tfset.schema
    split = schema["split_method"]
    lines = [
        "## Data",
        "",
        f"Split: {split['mode']}"
        + (" (speaker-independent: no speaker on two sides)" if split["speaker_independent"]
           else " (RANDOM by file: speakers appear on both sides; not comparable to "
                "speaker-independent results)") + ".",
        "",
        "| split | clips | speakers | corpora |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, s in schema["splits"].items():
        corpora = ", ".join(f"{c} {n}" for c, n in sorted(s["corpora"].items()))
        lines.append(f"| {name} | {s['examples']} | {len(s['speakers'])} | {corpora} |")
    if split["speaker_independent"]:
        lines.append("")
        lines += [f"{name.capitalize()} speakers (never seen in training): "
                  f"{', '.join(s['speakers'])}." for name, s in schema["splits"].items()
                  if name != "train" and s["speakers"]]
    lines += ["", "## Results", "",
              "| split | n | UA | WA | macro-F1 |", "| --- | ---: | ---: | ---: | ---: |"]
    spk = metrics.get("speaker_norm") or {}
    for source, title, sub in ((metrics, "{}", "{}: "),
                               (spk, "{}, " + speaker_rows, "{}, per speaker: ")):
        for key in ("validation", "test"):
            if key in source:
                lines += _result_rows(source[key], title.format(key), sub.format(key))
    lines += ["", "UA = mean per-class recall, WA = accuracy." + (speaker_note if spk else ""),
              ""]
    lines += calibration_lines(metrics)
    return lines + licence_lines(schema)


LICENCES = {"ravdess": "RAVDESS (CC BY-NC-SA 4.0)", "tess": "TESS (CC BY-NC-ND 4.0)",
            "savee": "SAVEE (free for research use)", "nemo": "nEMO (CC BY-NC-SA 4.0)",
            "emodb": "Emo-DB (free for research use)", "crema_d": "CREMA-D (ODbL 1.0)"}


def licence_lines(schema: dict) -> list[str]:
    """The Licence section for the corpora a set's splits hold (README, Data licences)."""
    corpora = sorted({c for s in schema["splits"].values() for c in s["corpora"]})
    named = [LICENCES.get(c, f"{c} (see its distribution)") for c in corpora]
    restricted = [c for c in corpora if c in ("ravdess", "tess", "savee", "nemo", "emodb")]
    return ["## Licence of the training data", "",
            ", ".join(named) + "." + (
                " These do not allow commercial use; a model trained on them inherits that "
                "restriction in practice." if restricted else "")
            + " Acted emotion in studio recordings: expect lower accuracy on spontaneous "
            "speech, other languages and other recording conditions.", ""]


def calibration_lines(metrics: dict) -> list[str]:
    """The Reliability section: temperature, ECE before / after (15 bins) on validation, where
    it was fitted, and on test, the low-confidence threshold, the no-speech rule."""
    cal = metrics.get("calibration") or {}
    if not cal:
        return []
    lines = ["## Reliability", "",
             "Outputs besides the emotion (docs/reliability.md): `speech_ratio` (share of the "
             "clip's 20 ms frames that are voiced speech) and `status`: `no_speech` under the "
             "export's speech threshold (zoo.json `reliability`), else `low_confidence` when "
             "the calibrated top probability is under the threshold chosen on validation, "
             "else `ok`. `probabilities` are calibrated by a temperature fitted on the "
             "validation split; `logits` are the model's own.", "",
             "| head | temperature | ECE validation before / after | ECE test before / after "
             "| low-confidence threshold (validation share under it) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for key, title in (("plain", "one clip"), ("speaker", "per speaker")):
        c = cal.get(key)
        if not c:
            continue
        test = (f"{c['test_ece_before']:.3f} / {c['test_ece_after']:.3f}"
                if "test_ece_before" in c else "-")
        lines.append(f"| {title} | {c['temperature']:.2f} | {c['ece_before']:.3f} / "
                     f"{c['ece_after']:.3f} | {test} | {c['confidence_threshold']:.2f} "
                     f"({100 * c['share_low_confidence']:.0f}%) |")
    return lines + [""]


def embedding_results(tfset, metrics: dict) -> list[str]:
    """data_and_results for exports whose per-speaker rows standardise embeddings
    (zoo.refit_head, runs trained with --speaker-groups)."""
    return data_and_results(tfset, metrics, speaker_note=SPEAKER_EMBEDDING_NOTE,
                            speaker_rows=SPEAKER_EMBEDDING_ROWS)
