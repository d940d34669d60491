"""Model registry: a name -> a Keras model builder, with the data contract it expects.

    @register_model("mfcc_cnn", spec=mfcc_spec, description="...")
    def mfcc_cnn(num_classes, spec, **overrides) -> keras.Model: ...

    build_model("mfcc_cnn", num_classes=7)        # spec defaults to the registered one
    list_models()                                 # ['logmel_cnn', 'mfcc_cnn', ...]
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Callable

from pipelines.features.spec import FeatureSpec

INPUTS = ("features", "embedding", "frames", "waveform")


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """name; builder(num_classes, spec, **overrides); input: what the model takes
    ('features' = [T, C] from a FeatureSpec, 'embedding'/'frames' = SSL vectors/sequences,
    'waveform' = raw audio); default_spec() gives its FeatureSpec (features models)."""

    name: str
    builder: Callable
    input: str
    default_spec: Callable[[], FeatureSpec] | None
    description: str
    family: str
    train_defaults: dict = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES = ("zoo.models.cnn", "zoo.models.crnn", "zoo.models.ssl_heads",
             "zoo.models.whisper_heads", "zoo.models.wav2vec2_finetune")


def register_model(name: str, *, input: str = "features",
                   spec: Callable[[], FeatureSpec] | None = None, description: str = "",
                   train_defaults: dict | None = None):
    """Decorator registering a builder under `name`; a name can be registered only once.
    train_defaults: zoo.train's defaults for this model where they differ from the zoo's
    (lr, epochs, patience), used when the flag is not given."""
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}")

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered "
                             f"(by {_REGISTRY[name].builder.__module__})")
        _REGISTRY[name] = ModelEntry(name, builder, input, spec,
                                     description or (builder.__doc__ or "").strip().split("\n")[0],
                                     builder.__module__, dict(train_defaults or {}))
        return builder

    return decorate


def _load_families() -> None:
    for module in _FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def list_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint}; available: "
                                f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, num_classes: int, spec: FeatureSpec | None = None, **overrides):
    """Build a registered model. spec: the FeatureSpec of its input (default: registered)."""
    entry = get_entry(name)
    if spec is None and entry.default_spec is not None:
        spec = entry.default_spec()
    if entry.default_spec is not None and spec.kind != entry.default_spec().kind:
        raise ValueError(f"model {name!r} takes {entry.default_spec().kind} features, "
                         f"but the FeatureSpec says {spec.kind!r}")
    return entry.builder(num_classes=num_classes, spec=spec, **overrides)
