"""Wav2Vec2 (or HuBERT) partially fine-tuned for emotion: the pretrained encoder with its
convolutional feature encoder and lower transformer layers frozen, the top `trainable_layers`
layers trained, and a head on the mean + std of the last layer's frames.

    python -m zoo.train --model wav2vec2_finetune --checkpoint ckpt/wav2vec2-base \\
        --data tfrecords/full --set trainable_layers=2 --lr 1e-3

This is a tf_keras model (the transformers TF classes are tf_keras models), trained by the
custom loop in zoo.training.finetune; it takes {'waveform' [batch, samples], 'length' [batch]}
and gives class probabilities, and is exported as a waveform SavedModel (zoo.export.ssl).
transformers and tf_keras are imported only when the model is built, so listing the registry
stays in Keras 3 land. Frozen parts run in inference mode (no dropout) and under
stop_gradient; trained layers use the checkpoint's dropout rates. No LayerDrop and no
SpecAugment-style masking of the frames (the TF classes draw those in Python, once per trace).
"""

from __future__ import annotations

from zoo.models.registry import register_model


class FinetuneConfigError(ValueError):
    """A fine-tuning setting that cannot work; one line."""


def classifier_class():
    """The tf_keras Model subclass (defined on first use: it imports tf_keras)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import tf_keras

    from pipelines.encoders.ssl import masked_mean_std

    class SSLWaveformClassifier(tf_keras.Model):
        """{'waveform', 'length'} -> probabilities [batch, classes]."""

        def __init__(self, encoder, num_classes: int, trainable_layers: int,
                     head_units: int = 256, head_dropout: float = 0.3,
                     encoder_lr_scale: float = 0.05, name: str = "wav2vec2_finetune"):
            super().__init__(name=name)
            self.encoder = encoder  # PaddingSafeEncoder (plain object)
            self.ssl = encoder.model  # the tracked transformers model
            self.trainable_layers = int(trainable_layers)
            self.train_from = encoder.num_layers - self.trainable_layers
            self.encoder_lr_scale = float(encoder_lr_scale)
            self.dense = tf_keras.layers.Dense(head_units, activation="relu", name="dense")
            self.head_dropout = tf_keras.layers.Dropout(head_dropout, name="head_dropout")
            self.classifier = tf_keras.layers.Dense(num_classes, activation="softmax",
                                                    name="classifier")

        def call(self, inputs, training=False):
            states, mask = self.encoder(inputs["waveform"], inputs["length"],
                                        training=training, train_from=self.train_from)
            x = masked_mean_std(states[-1], mask)
            x = self.dense(x)
            x = self.head_dropout(x, training=training)
            return self.classifier(x)

        def encoder_variables(self) -> list:
            """The encoder variables fine-tuning changes (top layers; see PaddingSafeEncoder)."""
            return self.encoder.trainable_variables(self.train_from)

        def head_variables(self) -> list:
            return self.dense.trainable_variables + self.classifier.trainable_variables

    _CLASS = SSLWaveformClassifier
    return _CLASS


_CLASS = None


def build_finetune(num_classes: int, checkpoint, encoder: str = "wav2vec2",
                   trainable_layers: int = 2, head_units: int = 256, head_dropout: float = 0.3,
                   encoder_lr_scale: float = 0.05):
    from pipelines.encoders.ssl import inspect_checkpoint, load_encoder
    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    ck = inspect_checkpoint(checkpoint, encoder)
    if not 1 <= int(trainable_layers) <= ck.num_layers:
        raise FinetuneConfigError(f"trainable_layers must be 1..{ck.num_layers} for this "
                                  f"checkpoint, got {trainable_layers}")
    if int(trainable_layers) == ck.num_layers and not tf.config.list_logical_devices("GPU"):
        raise FinetuneConfigError("training every transformer layer also trains the grouped "
                                  "positional convolution, whose gradient TensorFlow lacks on "
                                  f"CPU: use trainable_layers < {ck.num_layers} or a GPU")
    model = classifier_class()(load_encoder(ck), num_classes, trainable_layers, head_units,
                               head_dropout, encoder_lr_scale)
    model.checkpoint_info = {**ck.describe(), "checkpoint_sha256": ck.sha256()}
    model.encoder_config_json = (ck.folder / "config.json").read_text()
    # build the head's variables with a tiny call, so they exist before training / restoring
    model({"waveform": tf.zeros([1, 2 * model.encoder.min_samples]),
           "length": tf.constant([2 * model.encoder.min_samples])}, training=False)
    return model


@register_model("wav2vec2_finetune", input="waveform")
def wav2vec2_finetune(num_classes: int, spec=None, checkpoint=None, encoder: str = "wav2vec2",
                      trainable_layers: int = 2, head_units: int = 256,
                      head_dropout: float = 0.3, encoder_lr_scale: float = 0.05):
    """Wav2Vec2 with the top transformer layers fine-tuned and a mean+std pooled head."""
    if checkpoint is None:
        raise FinetuneConfigError("wav2vec2_finetune needs a pretrained checkpoint: "
                                  "--checkpoint DIR or a hub id such as facebook/wav2vec2-base "
                                  "(see docs/ssl.md)")
    return build_finetune(num_classes, checkpoint, encoder, trainable_layers, head_units,
                          head_dropout, encoder_lr_scale)
