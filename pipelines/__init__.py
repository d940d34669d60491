"""Data side of the zoo: corpus readers, audio loading, splits, TFRecords and on-graph features.

Nothing here imports TensorFlow at import time; the modules that need it (features, dataset,
build) import it themselves.
"""
