"""`python -m zoo.lite`: LiteRT (TFLite) export of an export's serving_default: waveform in, features on the graph.

The command's implementation is zoo/export/lite.py (docs/architecture.md).
"""
import sys

from zoo.export.lite import main

if __name__ == "__main__":
    sys.exit(main())
