"""FeatureSpec: JSON round trip and clear, one-line errors for specs that cannot work."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from pipelines.features.spec import SPEC_VERSION, FeatureSpec, SpecError, logmel_spec, mfcc_spec

SPECS = [
    FeatureSpec(),
    mfcc_spec(),
    logmel_spec(n_mels=40, fmin=50.0, fmax=None, top_db=None, normalization="none",
                remove_dc=False, trim_db=30.0),
    mfcc_spec(n_mfcc=13, n_mels=40, win_length=512, hop_length=256, trim_db=45),
    FeatureSpec(sample_rate=8000, fmax=4000.0, n_fft=256, win_length=200, hop_length=80),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.n_mels}-{s.sample_rate}")
def test_json_round_trip(spec, tmp_path):
    text = spec.to_json()
    assert json.loads(text) == spec.to_dict()
    assert json.loads(text)["version"] == SPEC_VERSION
    again = FeatureSpec.from_json(text)
    assert again == spec and hash(again) == hash(spec)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    spec.save(tmp_path / "spec" / "feature_spec.json")
    assert FeatureSpec.load(tmp_path / "spec" / "feature_spec.json") == spec
    assert [p.name for p in (tmp_path / "spec").iterdir()] == ["feature_spec.json"]


def test_defaults_are_the_zoo_contract():
    spec = FeatureSpec()
    assert (spec.kind, spec.sample_rate, spec.win_length, spec.hop_length, spec.n_fft) == \
        ("logmel", 16000, 400, 160, 512)
    assert spec.channels == 64 and spec.channel_names[-1] == "mel63"
    mfcc = mfcc_spec()
    assert mfcc.channels == 41 and mfcc.channel_names[0] == "c0"
    assert mfcc.channel_names[-1] == "log_energy"
    assert [spec.frames(n) for n in (0, 159, 160, 16000)] == [1, 1, 2, 101]


def test_spec_is_frozen_and_replace_validates():
    spec = FeatureSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_mels = 40
    assert spec.replace(n_mels=40).n_mels == 40 and spec.n_mels == 64
    with pytest.raises(SpecError, match="n_fft must be even"):
        spec.replace(n_fft=513)


@pytest.mark.parametrize("changes, message", [
    ({"kind": "spectrogram"}, "kind must be one of ('logmel', 'mfcc', 'whisper_logmel'), got 'spectrogram'"),
    ({"normalization": "global"}, "normalization must be one of ('utterance', 'none')"),
    ({"win_length": 600}, "need 0 < win_length <= n_fft"),
    ({"win_length": 0}, "need 0 < win_length <= n_fft"),
    ({"n_fft": 511, "win_length": 400}, "n_fft must be even"),
    ({"hop_length": 0}, "hop_length must be positive"),
    ({"n_mels": 0}, "n_mels must be positive"),
    ({"fmax": 9000.0}, "need 0 <= fmin < fmax <= 8000.0"),
    ({"fmin": 8000.0, "fmax": None}, "need 0 <= fmin < fmax <= 8000.0"),
    ({"fmin": -1.0}, "need 0 <= fmin < fmax"),
    ({"sample_rate": 0}, "need 0 <= fmin < fmax <= 0.0"),
    ({"kind": "mfcc", "n_mfcc": 80}, "need 0 < n_mfcc <= n_mels"),
    ({"kind": "mfcc", "n_mfcc": 0}, "need 0 < n_mfcc <= n_mels"),
    ({"log_floor": 0.0}, "log_floor must be positive"),
    ({"top_db": -5.0}, "top_db must be positive (or None)"),
    ({"trim_db": 0}, "trim_db must be positive (or None)"),
    ({"version": SPEC_VERSION + 1}, f"spec version {SPEC_VERSION + 1} is not {SPEC_VERSION}"),
    # wrong types, as hand-edited JSON gives them: a SpecError, not a TypeError deep inside
    ({"hop_length": "160"}, "hop_length must be an integer, got '160'"),
    ({"win_length": 400.0}, "win_length must be an integer, got 400.0"),
    ({"n_mels": True}, "n_mels must be an integer, got True"),
    ({"fmin": "0"}, "fmin must be a number, got '0'"),
    ({"trim_db": "30"}, "trim_db must be a number or None, got '30'"),
    ({"remove_dc": "no"}, "remove_dc must be true or false, got 'no'"),
    ({"kind": None}, "kind must be a string, got None"),
])
def test_bad_specs_are_clear_errors(changes, message):
    with pytest.raises(SpecError) as info:
        FeatureSpec(**changes)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match="^" + re.escape(str(info.value)) + "$"):
        FeatureSpec.from_json(json.dumps({**FeatureSpec().to_dict(), **changes}))


def test_all_problems_are_reported_at_once():
    with pytest.raises(SpecError) as info:
        FeatureSpec(kind="cqt", hop_length=-1, n_fft=511)
    assert str(info.value).split("; ") == [
        "kind must be one of ('logmel', 'mfcc', 'whisper_logmel'), got 'cqt'", "n_fft must be even",
        "hop_length must be positive"]


@pytest.mark.parametrize("text, message", [
    ("{ not json", "FeatureSpec JSON does not parse: Expecting property name"),
    ('{"n_mels": 64, "colour": "blue", "n_bins": 3}', "unknown FeatureSpec fields: colour, n_bins"),
    ("[1, 2]", "a FeatureSpec is a JSON object of fields, got list"),
    ('"logmel"', "a FeatureSpec is a JSON object of fields, got str"),
])
def test_bad_json_is_a_clear_error(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        FeatureSpec.from_json(text)


def test_load_names_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"missing\.json: cannot read FeatureSpec \(No such file"):
        FeatureSpec.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "wavelet"}')
    with pytest.raises(SpecError, match=r"bad\.json: kind must be one of"):
        FeatureSpec.load(bad)


def test_missing_fields_take_defaults():
    """A spec JSON written with fewer fields (e.g. by hand) fills in the defaults."""
    assert FeatureSpec.from_json('{"kind": "mfcc", "n_mfcc": 20}') == mfcc_spec(n_mfcc=20)
