"""`python -m pipelines.eda`: exploratory data analysis of emotional-speech corpora: one table, a few pictures, a summary.

The command's implementation is pipelines/exploration/eda.py (docs/architecture.md).
"""
import sys

from pipelines.exploration.eda import main

if __name__ == "__main__":
    sys.exit(main())
