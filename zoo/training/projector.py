"""Clip embeddings in TensorBoard's projector (PCA, t-SNE, UMAP views, coloured by metadata).

    write_projector(run / "tb", vectors, {"emotion": [...], "corpus": [...], ...})

writes run/tb/projector/: a checkpoint holding the vectors, metadata.tsv (one row per clip,
one column per key) and projector_config.pbtxt; `tensorboard --logdir run/tb` shows them in the
PROJECTOR tab. zoo.train writes the test split's pooled embeddings of every embedding-head run
(the vector its classifier reads) with emotion, predicted emotion, corpus and speaker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_CLIPS = 10_000  # the projector's browser view gets slow beyond this


def write_projector(tb_dir, vectors: np.ndarray, metadata: dict[str, list],
                    name: str = "embedding") -> Path:
    """Write the projector files under tb_dir/projector; returns that folder."""
    import tensorflow as tf
    from tensorboard.plugins import projector

    vectors = np.asarray(vectors, np.float32)[:MAX_CLIPS]
    folder = Path(tb_dir) / "projector"
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(metadata)
    with open(folder / "metadata.tsv", "w", encoding="utf-8") as f:
        f.write("\t".join(keys) + "\n")
        for i in range(len(vectors)):
            f.write("\t".join(_cell(metadata[k][i]) for k in keys) + "\n")
    checkpoint = tf.train.Checkpoint(**{name: tf.Variable(vectors, name=name)})
    checkpoint.save(str(folder / f"{name}.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(folder), config)
    # An event file makes the folder a TensorBoard run, which is where the projector looks.
    with tf.summary.create_file_writer(str(folder)).as_default():
        tf.summary.text("projector", f"{len(vectors)} clips x {vectors.shape[1]} numbers; "
                        f"metadata: {', '.join(keys)}", step=0)
    return folder


def _cell(value) -> str:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.replace("\t", " ").replace("\n", " ")
