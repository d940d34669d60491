"""`python -m zoo.predict`: predict emotions for audio files or folders with an exported model.

The command's implementation is zoo/inference/predict.py (docs/architecture.md).
"""
import sys

from zoo.inference.predict import main

if __name__ == "__main__":
    sys.exit(main())
