"""The short model card written beside every export."""

from __future__ import annotations

import datetime
import json

from pipelines.parallel import default_workers


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
        f"Features computed inside the graph: {spec.kind}, {spec.channels} channels, "
        f"window {spec.win_length} / hop {spec.hop_length} samples, n_fft {spec.n_fft}, "
        f"trim {spec.trim_db} dB, DC removal {spec.remove_dc}, normalisation "
        f"{spec.normalization} (full FeatureSpec in assets/feature_spec.json).",
        "",
    ]
    return "\n".join(lines + data_and_results(tfset, metrics))


def ssl_model_card(config, tfset, metrics: dict, input_lines: list[str]) -> str:
    """The card of an SSL model (embedding head or fine-tuned encoder); input_lines describe
    what its serving signature takes."""
    lines = [f"# {config.model}", "", _trained_line(config, tfset, metrics), "",
             "## Input and output", "", *input_lines,
             f"Labels (index order): {', '.join(tfset.schema['labels'])}.", ""]
    return "\n".join(lines + data_and_results(tfset, metrics))


def _trained_line(config, tfset, metrics: dict) -> str:
    def value(v) -> str:  # as typed on the command line (strings need no JSON quotes)
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    flags = [f"--set {k}={value(v)}" for k, v in (getattr(config, "overrides", None) or {}).items()]
    flags += [f"--spec {k}={value(v)}"
              for k, v in (getattr(config, "spec_overrides", None) or {}).items()]
    return (f"Trained {datetime.date.today().isoformat()} with `python -m zoo.train --model "
            f"{' '.join([config.model, '--data', str(tfset.folder), *flags])}` "
            f"({metrics.get('epochs_run')} epochs, best epoch {metrics.get('best_epoch')}, "
            f"{metrics.get('train_seconds', 0) / 60:.1f} min on {default_workers()} CPU cores).")


def data_and_results(tfset, metrics: dict) -> list[str]:
    """The Data, Results and Licence sections (lines)."""
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
    for key in ("validation", "test"):
        if key in metrics:
            m = metrics[key]
            lines.append(f"| {key} | {m['n']} | {_fmt(m['ua'])} | {_fmt(m['wa'])} | "
                         f"{_fmt(m['macro_f1'])} |")
            for corpus, c in m.get("per_corpus", {}).items():
                lines.append(f"| {key}: {corpus} | {c['n']} | {_fmt(c['ua'])} | "
                             f"{_fmt(c['wa'])} | {_fmt(c['macro_f1'])} |")
            if "without_calm" in m:
                c = m["without_calm"]
                lines.append(f"| {key}: without RAVDESS calm | {c['n']} | {_fmt(c['ua'])} | "
                             f"{_fmt(c['wa'])} | {_fmt(c['macro_f1'])} |")
    lines += ["", "UA = mean per-class recall, WA = accuracy.", "",
              "## Licence of the training data", "",
              "RAVDESS (CC BY-NC-SA 4.0), TESS (CC BY-NC-ND 4.0) and SAVEE (research use) do "
              "not allow commercial use; a model trained on them inherits that restriction in "
              "practice. Acted emotion in studio recordings: expect lower accuracy on "
              "spontaneous speech, other languages and other recording conditions.", ""]
    return lines
