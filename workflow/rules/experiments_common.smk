# The experiments grid (config key `experiments`), planned: which keyed job each variant, seed and
# machine type uses at each step (eat_asd.experiments), and the paths and input functions of the
# rules in experiments.smk.

import json

from eat_asd.experiments import digest, plan_experiments
from eat_asd.plan import check_banks

GRID = RUN.grid  # the grid's paths (eat_asd.layout)

try:
    EXP = plan_experiments(
        config,
        MACHINES,
        TRAIN_MACHINES,
        check=lambda variant: [check_banks(p, variant) for p in PLAN.values()],
    )
except EatAsdError as err:
    raise WorkflowError(str(err)) from None


wildcard_constraints:
    fkey=r"[0-9a-f]{12}",
    tkey=r"[0-9a-f]{12}",
    ekey=r"[0-9a-f]{12}",
    skey=r"[0-9a-f]{12}",
    ukey=r"[0-9a-f]{12}",
    variant="|".join(EXP.variants),
    seed=r"\d+",


# variants with the config's feature settings use the one-run feature files
BASE_FEATURES = digest(feature_values(config))


def exp_features_file(fkey, machine, part):
    if fkey == BASE_FEATURES:
        return RUN.features(machine, part)
    return GRID.features(fkey, machine, part)


def exp_embeddings_file(ekey):
    return GRID.embeddings(ekey, EXP.embeddings[ekey].machine)


def exp_scores_file(variant, seed, machine, info=False):
    """The score table (or its JSON) a run uses for a machine type: its scoring's, or its fusion's."""
    kind, key = EXP.scores[(variant, int(seed), machine)]
    return (GRID.score_info if info else GRID.scores)(kind, key, machine)


def get_exp_training_features(wildcards):
    fkey = EXP.trainings[wildcards.tkey].features_key
    return [exp_features_file(fkey, m, "train") for m in TRAIN_MACHINES]


def get_exp_training_audio(wildcards):
    return noise_mix_audio(EXP.trainings[wildcards.tkey].settings["noise_mix"])


def get_exp_encoder_file(name):
    def get(wildcards):
        return GRID.training(EXP.embeddings[wildcards.ekey].training).encoder_file(name)

    return get


def get_exp_embed_features(wildcards):
    fkey = EXP.trainings[EXP.embeddings[wildcards.ekey].training].features_key
    return [exp_features_file(fkey, wildcards.machine, p) for p in PARTS]


def get_exp_bank_files(kind):
    """With scoring.bank_split = all: the other machine types' embeddings (or training manifests)."""

    def get(wildcards):
        others = EXP.scorings[wildcards.skey].bank_embeddings
        if kind == "embeddings":
            return [exp_embeddings_file(k) for k in others]
        return [RUN.manifest(EXP.embeddings[k].machine, "train") for k in others]

    return get


def get_exp_fuse_members(info):
    def get(wildcards):
        files = GRID.score_info if info else GRID.scores
        return [
            files(kind, key, wildcards.machine)
            for kind, key in EXP.fusions[wildcards.ukey].members
        ]

    return get


def get_exp_run_files(info):
    def get(wildcards):
        return [
            exp_scores_file(wildcards.variant, wildcards.seed, m, info)
            for m in MACHINES
        ]

    return get


def exp_runs():
    """{variant: {seed: [score tables]}}: what the comparison reads."""
    return {
        v: {str(s): [exp_scores_file(v, s, m) for m in MACHINES] for s in EXP.seeds}
        for v in EXP.variants
    }
