"""The models shipped in savedmodels/: each is a complete export under 20 MB (the Whisper model
under 40 MB: the encoder's 8M weights) whose card names the held-out speakers and gives its
results, and which serves real clips; the versions with reliability outputs say no_speech for
silence. (Their accuracy is measured by bench/shipped_models.py, which is too slow for the
default suite.)"""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("mfcc_cnn", "logmel_cnn", "mfcc_crnn_attn", "whisper_linear")
MAX_MB = {"whisper_linear": 40}
present = [f"{m}/{v.name}" for m in SHIPPED for v in sorted((ROOT / "savedmodels" / m).glob("*"))
           if v.name.isdigit() and (v / "saved_model.pb").is_file()]


def test_every_shipped_model_has_a_first_version():
    if not present:
        pytest.skip("no shipped models in this checkout")
    assert {p.split("/")[0] for p in present if p.endswith("/1")} == set(SHIPPED)


@pytest.mark.parametrize("name", present)
def test_shipped_model_is_complete_and_documented(name):
    version = ROOT / "savedmodels" / name
    info = json.loads((version / "zoo.json").read_text())
    card = (version / "model_card.md").read_text()
    assert info["name"] == version.parent.name and info["version"] == int(version.name)
    assert (version / "assets" / "labels.txt").read_text().split() == info["labels"]
    assert "speaker-independent" in card and "Test speakers (never seen in training)" in card
    assert "UA" in card and "without RAVDESS calm" in card
    size = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    assert size < MAX_MB.get(version.parent.name, 20) * 1e6, f"{name}: {size / 1e6:.1f} MB"


@pytest.mark.parametrize("name", present)
def test_shipped_model_serves_a_real_clip(name):
    from pipelines.audio.decode import load
    from zoo.inference.savedmodel import SavedModelRunner
    from conftest import DEMO

    runner = SavedModelRunner(ROOT / "savedmodels" / name)
    clip = load(sorted(DEMO.rglob("*.flac"))[0])
    probs = runner.predict([clip, clip[:16000]])
    assert probs.shape == (2, len(runner.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    if runner.info.get("reliability"):
        import tensorflow as tf

        out = runner.loaded.signatures["serving_default"](
            waveform=tf.constant(np.stack([clip[:32000], np.zeros(32000, np.float32)])))
        assert [s.decode() for s in out["status"].numpy()][1] == "no_speech"
        assert out["speech_ratio"].numpy()[0] > 0.1


by_speaker = [p for p in present
              if "speaker_head" in json.loads((ROOT / "savedmodels" / p / "zoo.json").read_text())]


@pytest.mark.parametrize("name", by_speaker)
def test_shipped_refit_model_serves_a_speaker(name):
    """The re-fitted versions (zoo.refit_head) answer serving_by_speaker for one actor's demo
    clips, and their card names the source version and the per-speaker results."""
    from pipelines.audio.decode import load
    from zoo.inference.savedmodel import SavedModelRunner
    from conftest import DEMO

    version = ROOT / "savedmodels" / name
    info = json.loads((version / "zoo.json").read_text())
    card = (version / "model_card.md").read_text()
    # the source version is shipped, or its card is inside this one (zoo.refit_head)
    assert (ROOT / info["speaker_head"]["source"] / "saved_model.pb").is_file() \
        or "## The source's card" in card
    assert "embeddings standardised per speaker" in (version / "model_card.md").read_text()
    runner = SavedModelRunner(version)
    waves = [load(f) for f in sorted((DEMO / "Actor_04").glob("*.flac"))]
    probs = runner.predict_by_speaker(waves, ["Actor_04"] * len(waves))
    assert probs.shape == (len(waves), len(runner.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


reliable = [p for p in present
            if "reliability" in json.loads((ROOT / "savedmodels" / p / "zoo.json").read_text())]


@pytest.mark.parametrize("name", reliable)
def test_shipped_model_refuses_bad_requests_with_their_reason(name):
    """The reliability outputs (speech_ratio) run after the input checks: a bad request gets
    the checks' one-line reason, every time (not an error from inside the speech graph)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(ROOT / "savedmodels" / name))
    wave = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
    sig = loaded.signatures["serving_with_length"]
    for _ in range(3):
        with pytest.raises(tf.errors.InvalidArgumentError, match="length: wrong rank"):
            sig(waveform=tf.constant(wave), length=tf.constant([[16000], [16000]], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="length: larger than"):
        sig(waveform=tf.constant(wave), length=tf.constant([16000, 20000], tf.int32))
