"""`python -m zoo.serving`: the TF Serving side of the zoo: the server's model config, REST request bodies, export checks.

The command's implementation is zoo/export/serving.py (docs/architecture.md).
"""
import sys

from zoo.export.serving import main

if __name__ == "__main__":
    sys.exit(main())
