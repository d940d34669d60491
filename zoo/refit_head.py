"""`python -m zoo.refit_head`: re-fit an exported model's classifier on its frozen embeddings, plain and per speaker.

The command's implementation is zoo/training/refit_head.py (docs/architecture.md).
"""
import sys

from zoo.training.refit_head import main

if __name__ == "__main__":
    sys.exit(main())
