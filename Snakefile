# eat-asd: anomalous machine sound detection with a shared LoRA-tuned EAT encoder.
#   snakemake --cores 8 --use-conda                          # real data, config/config.yaml
#   snakemake --cores 2 --configfile config/demo.yaml         # offline demo
#   snakemake --profile slurm                                 # on a SLURM cluster
import sys

sys.path.insert(0, f"{workflow.basedir}/src")  # the package, from this checkout

from eat_asd.config import validate_config, ConfigError


configfile: "config/config.yaml"


try:
    config = validate_config(config, "config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/model_card.smk"


rule all:
    input:
        ALL_OUTPUTS,
    default_target: True
