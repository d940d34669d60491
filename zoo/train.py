"""`python -m zoo.train`: train a registered model (`--model NAME [--data tfrecords/NAME] ...`).

The command's implementation is zoo/training/train.py (docs/architecture.md).
"""
import sys

from zoo.training.train import main

if __name__ == "__main__":
    sys.exit(main())
