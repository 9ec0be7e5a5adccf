# The rules' view of the config: one camflow.workflow.Workflow (config accessors, path grammar,
# GSLM stage planning, table inputs; unit-tested in tests/test_workflow_glue.py). The names
# below are what the rule files call in `input:` and `params:`.

import sys

sys.path.insert(0, workflow.basedir)  # the camflow package beside the Snakefile

from camflow.tables import table_class
from camflow.workflow import Workflow


CONDA_ENV = "../envs/camflow.yaml"

W = Workflow(config)
W.check()

dataset_config = W.dataset_config
classifier_config = W.classifier_config
slm_config = W.slm_config
source_config = W.source_config
dataset_params = W.dataset_params
split_params = W.split_params
train_data_params = W.train_data_params
dataset_marker = W.dataset_marker
dataset_checks = W.dataset_checks
affinity_label_config = W.affinity_label_config
refiner_training_config = W.refiner_training_config
refiner_inference_config = W.refiner_inference_config
refiner_training_inputs = W.refiner_training_inputs
refine_inputs = W.refine_inputs
segmenter_config = W.segmenter_config
segmentation_training_inputs = W.segmentation_training_inputs
gslm_config = W.gslm_config
gslm_stage_files = W.gslm_stage_files
gslm_stage_cache = W.gslm_stage_cache
slm_training_inputs = W.slm_training_inputs
classifier_training_inputs = W.classifier_training_inputs
stage_resources = W.stage_resources
runtime_params = W.runtime_params
table_inputs = W.table_inputs
table_spec = W.table_spec
TABLES_WITH_FIGURES = [t for t in config["tables"] if W.table(t).figure]
