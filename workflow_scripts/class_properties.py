"""Rule `class_properties`: O, %S, %C and L of every class of a split."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_class_properties  # noqa: E402

run_logged(snakemake.log[0], run_class_properties, snakemake.output.json, snakemake.params.data)
