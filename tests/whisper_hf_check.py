"""transformers' TF Whisper encoder on a Hugging Face folder, run in its own process by
tests/test_whisper.py (importing transformers' TF classes switches tf.keras to tf_keras):

    python tests/whisper_hf_check.py HF_FOLDER MEL.npy OUT.npz

MEL.npy: [batch, n_mels, 3000] log-Mel features; writes OUT.npz with `states` [batch, L + 1,
1500, d] (transformers' hidden_states; the last after the final layer norm).
"""

from __future__ import annotations

import sys

import numpy as np


def main(folder: str, mel_path: str, out: str) -> int:
    from pipelines.common.tfenv import _quiet_stderr, quiet_tensorflow

    quiet_tensorflow()
    with _quiet_stderr():
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.TFWhisperModel.from_pretrained(folder)
    mel = np.load(mel_path)
    encoded = model.get_encoder()(mel, output_hidden_states=True)
    states = np.stack([h.numpy() for h in encoded.hidden_states], axis=1)
    np.savez(out, states=states)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
