"""`python -m zoo.evaluate`: evaluate an exported model on corpus folders or on a TFRecord split.

The command's implementation is zoo/evaluation/evaluate.py (docs/architecture.md).
"""
import sys

from zoo.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
