"""`python -m zoo.explain`: explain a trained model's predictions, check the explanations, compare feature types.

The command's implementation is zoo/xai/explain.py (docs/architecture.md).
"""
import sys

from zoo.xai.explain import main

if __name__ == "__main__":
    sys.exit(main())
