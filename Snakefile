# eat-asd: anomalous machine sound detection with a shared LoRA-tuned EAT encoder.
#   snakemake --cores 8 --use-conda                          # real data, config/config.yaml
#   snakemake --cores 2 --configfile config/demo.yaml         # offline demo
#   snakemake --profile slurm                                 # on a SLURM cluster
import os

from snakemake.utils import min_version

min_version("9.1.5")

try:
    from eat_asd.config import validate_config
    from eat_asd.errors import EatAsdError
except ImportError as err:
    raise WorkflowError(
        f"the eat_asd package is not installed in the Python that runs Snakemake ({err}): "
        f"run `bash scripts/quickstart.sh setup` and `source .venv/bin/activate`, "
        f"or `pip install -e {workflow.basedir}`"
    ) from None

# The conda envs install the package from this checkout (pip expands ${EAT_ASD_SOURCE} in envs/*.yaml).
os.environ.update(EAT_ASD_SOURCE=workflow.basedir)


configfile: "config/config.yaml"


try:
    config = validate_config(config, "config")
except EatAsdError as err:
    raise WorkflowError(str(err)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/model_card.smk"


if config["experiments"]:

    include: "workflow/rules/experiments_common.smk"
    include: "workflow/rules/experiments.smk"


rule all:
    default_target: True
    input:
        ALL_OUTPUTS,
