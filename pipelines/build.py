"""`python -m pipelines.build`: build a sharded TFRecord set from corpus folders.

The command's implementation is pipelines/records/build.py (docs/architecture.md).
"""
import sys

from pipelines.records.build import main

if __name__ == "__main__":
    sys.exit(main())
