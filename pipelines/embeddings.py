"""`python -m pipelines.embeddings`: run a pretrained speech encoder over a waveform set and write pooled SSL embeddings beside it.

The command's implementation is pipelines/encoders/embed.py (docs/architecture.md).
"""
import sys

from pipelines.encoders.embed import main

if __name__ == "__main__":
    sys.exit(main())
