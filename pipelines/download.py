"""`python -m pipelines.download`: download a corpus from Kaggle and put the folder its reader needs at --out.

The command's implementation is pipelines/corpora/download.py (docs/architecture.md).
"""
import sys

from pipelines.corpora.download import main

if __name__ == "__main__":
    sys.exit(main())
