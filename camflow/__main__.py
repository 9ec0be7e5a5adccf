"""``python -m camflow``: the ``camflow`` command (:mod:`camflow.cli`)."""

import sys

from camflow.cli import main

sys.exit(main())
