"""The savedmodels/<model>/<version>/ layout TF Serving reads: signature names, integer
versions, the zoo.json beside each SavedModel. No TensorFlow here, so commands that only find
or describe exports (zoo.serving config/request, zoo.predict's argument checks) start fast."""

from __future__ import annotations

import json
from pathlib import Path

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_LENGTH = "serving_with_length"
SIGNATURE_STATS = "serving_with_stats"
SIGNATURE_SPEAKER = "serving_by_speaker"  # zoo.refit_head exports only
# The same in two steps, for speakers with more clips than one request should hold:
SIGNATURE_EMBEDDING = "serving_embedding"  # waveform -> the embedding the statistics are over
SIGNATURE_SPEAKER_STATS = "serving_with_speaker_stats"  # embeddings + their speaker's mean/std
SIGNATURES = (SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS)


def next_version(base: Path) -> int:
    """The next free integer version under base (1 if none)."""
    versions = [int(p.name) for p in Path(base).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def read_export(path) -> dict:
    """zoo.json of an export folder, with labels and FeatureSpec, or a clear error."""
    path = Path(path)
    info = path / "zoo.json"
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path}: no saved_model.pb (not a SavedModel version folder)")
    if not info.is_file():
        raise FileNotFoundError(f"{path}: no zoo.json beside the SavedModel")
    return json.loads(info.read_text())


def min_clips_per_speaker(info: dict) -> int:
    """Clips per speaker that a zoo.refit_head export's card asks serving_by_speaker requests
    to hold (0 for other exports)."""
    return int(info.get("speaker_head", {}).get("min_clips_per_speaker", 0))


def few_clips_warning(counts: dict[str, int], wanted: int) -> str | None:
    """One warning line when some speakers have fewer than `wanted` clips, else None."""
    few = sorted(s for s, n in counts.items() if n < wanted)
    if not few:
        return None
    return (f"warning: {len(few)} speaker(s) with fewer than {wanted} clips (e.g. {few[0]}: "
            f"{counts[few[0]]}); the model card asks for at least {wanted} per speaker, "
            "statistics from fewer are poor")


def versions(model_folder) -> list[Path]:
    """The numbered version folders holding a SavedModel under savedmodels/<model>, lowest
    first."""
    found = [p for p in Path(model_folder).glob("*") if p.is_dir() and p.name.isdigit()
             and (p / "saved_model.pb").is_file()]
    return sorted(found, key=lambda p: int(p.name))


def resolve_version(path) -> Path:
    """savedmodels/<model> -> its highest version folder; a version folder is returned as is."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    found = versions(path)
    if not found:
        raise FileNotFoundError(f"{path}: neither a SavedModel nor a folder of numbered versions")
    return found[-1]


# The model zoo.predict and zoo.evaluate use when --model is not given (or names its family),
# and the order in which a family's models are preferred.
RECOMMENDED = "whisper_linear"
PREFERRED = (RECOMMENDED, "mfcc_cnn", "logmel_cnn", "mfcc_crnn_attn")


def savedmodels_root() -> Path:
    """./savedmodels when the command runs where one is, else the checkout's."""
    here = Path("savedmodels")
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "savedmodels"


def resolve_model(arg: str | None, root: Path | None = None) -> tuple[Path, str | None]:
    """--model as a user gives it -> (version folder, a note when it was chosen for them).

    None: the recommended model (RECOMMENDED, its highest version); a folder: as
    resolve_version; a model name under savedmodels/ ('mfcc_cnn'); a family, the start of
    model names ('whisper', 'mfcc', 'logmel'): its preferred model. FileNotFoundError with
    one line otherwise."""
    root = Path(root) if root is not None else savedmodels_root()
    if arg is None:
        path = root / RECOMMENDED
        if not versions(path):
            raise FileNotFoundError(f"{path}: the recommended model is not here; pass --model "
                                    "savedmodels/<model>[/<version>]")
        found = resolve_version(path)
        return found, f"model: {found} (the recommended model; --model to choose another)"
    path = Path(arg)
    if path.is_file():  # a LiteRT model (zoo.lite), checked by its reader
        return path, None
    if path.exists():
        return resolve_version(path), None
    if "/" not in arg and (root / arg).is_dir():
        return resolve_version(root / arg), None
    family = sorted(p.name for p in root.glob(f"{arg}_*") if versions(p)) if "/" not in arg \
        else []
    if family:
        chosen = next((name for name in PREFERRED if name in family), family[0])
        found = resolve_version(root / chosen)
        return found, f"model: {found} (the {arg} family's preferred model)"
    names = sorted(p.name for p in root.glob("*") if versions(p))
    raise FileNotFoundError(f"{arg}: no such export folder, model or family under {root} "
                            f"(there: {', '.join(names) or 'none'})")


def promote(source, root, version: int | None = None, replace: bool = False) -> Path:
    """Copy an export version folder (e.g. from a run's export) to root/<name>/<version>/.

    <name> comes from its zoo.json; version defaults to the next free number. The copy is
    written under a hidden temporary name and renamed into place, so TF Serving (which polls
    root) never sees half a version; with replace=True an existing version is swapped out the
    same way and deleted only after the new one is in place.
    """
    import os
    import shutil
    import tempfile

    source = Path(source)
    info = read_export(source)
    name = info.get("name")
    if not name:
        raise ValueError(f"{source}: zoo.json has no model name")
    model_base = Path(root) / name
    model_base.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_base)
    if version <= 0:
        raise ValueError(f"version must be a positive integer, not {version}")
    final = model_base / str(version)
    if final.resolve() == source.resolve():
        raise ValueError(f"{source}: source and destination are the same folder")
    if final.exists() and not replace:
        raise FileExistsError(f"{final} already exists (replace it with --replace)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_base))
    old = None
    try:
        staged = tmp / "new"
        shutil.copytree(source, staged)
        info["version"] = version
        (staged / "zoo.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        if final.exists():
            old = tmp / "old"
            os.rename(final, old)
        os.rename(staged, final)
    except BaseException:
        if old is not None and old.exists() and not final.exists():
            os.rename(old, final)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
