"""Make the helper modules of ``tests/`` (e.g. ``fixtures``) importable from the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
