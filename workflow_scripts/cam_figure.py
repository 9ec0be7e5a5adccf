"""Rule `cam_figure`: CAM overlays, seeds and the threshold curve of one evaluated cache."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_cam_figure  # noqa: E402

run_logged(snakemake.log[0], run_cam_figure,
           snakemake.input.cache, snakemake.input.json, snakemake.params.data,
           snakemake.output.png)
