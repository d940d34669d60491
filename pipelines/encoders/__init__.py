"""Pretrained speech encoders: Whisper (a Keras 3 encoder of the zoo's own, weights converted
from a CTranslate2 or Hugging Face checkpoint) lives here; HuBERT / Wav2Vec2 (transformers'
TF classes) in pipelines.encoders.ssl."""
