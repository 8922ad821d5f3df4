# eat-asd: anomalous machine sound detection with a shared LoRA-tuned EAT encoder.
#   snakemake --cores 8 --use-conda                          # real data, config/config.yaml
#   snakemake --cores 2 --configfile config/demo.yaml         # offline demo
#   snakemake --profile slurm                                 # on a SLURM cluster
# The workflow is workflow/Snakefile, the catalog's path, which modules load too. This file loads it
# as its own, with its default target (an `include:` would leave this file without one).
workflow.include("workflow/Snakefile", overwrite_default_target=True)
