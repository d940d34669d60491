"""`python -m zoo.calibrate`: give an existing export the reliability outputs (a calibrated new version).

The command's implementation is zoo/export/calibrate.py (docs/architecture.md).
"""
import sys

from zoo.export.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
