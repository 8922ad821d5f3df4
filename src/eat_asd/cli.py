"""`eat-asd`: every stage of the workflow as a subcommand, usable without Snakemake.

Without Snakemake, the core steps are:  eat-asd train ...;  eat-asd embed ...;  eat-asd evaluate -k 1 ...
Settings come from --config (a workflow config file) and/or --settings (JSON of one section,
as the workflow passes it); explicit flags such as -k win.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import default, section_schema
from .data import PARTS
from .layout import ANOMALY_SCORE, DECISION_RESULT, EMBEDDINGS_SUFFIX, SUBMISSION, Run, Tables, fill

DEVICE_ENV = "EAT_ASD_DEVICE"  # the device of every job that runs the encoder (auto: CUDA if present)
# torch threads of training: the float reductions, and so the trained weights, depend on their number, so it
# is fixed per machine (or by this variable), never the cores Snakemake grants the job (capped by --cores)
TRAIN_THREADS_ENV = "EAT_ASD_TRAIN_THREADS"

log = logging.getLogger("eat_asd")


def _section_settings(args, cls, from_config):
    """A stage's settings: the --config file's section (`from_config(config)`), then the --settings JSON
    on top; the schema gives whatever neither names."""
    from .config import load_config

    values = from_config(load_config(args.config)) if getattr(args, "config", None) else {}
    if getattr(args, "settings", None):
        values.update(json.loads(args.settings))
    return cls(**values)


def _threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def cmd_demo(args):
    from .demo import DemoSizes, make_demo_data, make_demo_encoder

    if not args.out and not (args.data_root and args.encoder):
        raise SystemExit("demo: give OUT, or both --data-root and --encoder")
    data = Path(args.data_root or Path(args.out) / "data")
    encoder = Path(args.encoder or Path(args.out) / "encoder")
    sizes = DemoSizes(seconds=args.seconds, train_source=args.train_source, train_target=args.train_target,
                      test_per_cell=args.test_per_cell, channels=args.channels)
    make_demo_data(data, args.seed, sizes)
    make_demo_encoder(encoder, args.seed)
    print(f"demo data: {data}\ndemo encoder: {encoder}")


def cmd_discover(args):
    from .data import check_manifest, discover
    from .io import write_csv
    from .stages import make_manifest, stored_paths

    if args.machine:
        make_manifest(args.data_root, args.machine, args.out, args.part)
    else:
        manifest = discover(args.data_root)
        check_manifest(manifest)
        write_csv(args.out, stored_paths(manifest, args.data_root))
        print(manifest.groupby(["machine", "split", "kind", "domain", "label", "channels"]).size().to_string())


def cmd_features(args):
    from .config import feature_values
    from .features import FeatureSettings
    from .stages import make_features

    _threads(args)
    settings = _section_settings(args, FeatureSettings, feature_values)
    make_features(args.manifest, args.data_root, settings, args.out, args.batch_size, args.device)


def train_threads(args) -> int:
    """--threads, else $EAT_ASD_TRAIN_THREADS, else every CPU this process may use (the same on every run on
    one machine, whatever --cores)."""
    from .runtime import available_cpus

    value = args.threads or os.environ.get(TRAIN_THREADS_ENV) or available_cpus()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise SystemExit(f"train: {TRAIN_THREADS_ENV} = {value!r}: expected a positive number of threads")
    return threads


def cmd_train(args):
    from dataclasses import replace

    import torch

    from .config import feature_values, train_values
    from .features import FeatureSettings
    from .stages import train
    from .train import TrainSettings

    torch.set_num_threads(train_threads(args))
    if len(args.features) != len(args.manifests):
        raise SystemExit("train: give one --manifests file per --features file, in the same order")
    settings = _section_settings(args, TrainSettings, train_values)
    if args.mode:
        settings = replace(settings, mode=args.mode)
    fs = (FeatureSettings(**json.loads(args.feature_settings)) if args.feature_settings
          else _section_settings(argparse.Namespace(config=args.config), FeatureSettings, feature_values))
    summary = train(args.encoder, args.features, args.manifests, fs, settings, args.out, args.device,
                    args.encoder_revision or None, args.data_root or None)
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2, default=str))


def cmd_embed(args):
    from dataclasses import replace

    from .config import machine_settings
    from .embed import EmbedSettings
    from .stages import embed

    _threads(args)
    settings = _section_settings(args, EmbedSettings, lambda config: machine_settings(config, args.machine or "", "embedding"))
    if args.batch_size:
        settings = replace(settings, batch_size=args.batch_size)
    embed(args.encoder, args.features, args.manifests, args.data_root, settings, args.out, args.device)


def _score_settings(args, machine):
    from dataclasses import replace

    from .config import machine_settings
    from .scoring import ScoreSettings

    settings = _section_settings(args, ScoreSettings, lambda config: machine_settings(config, machine, "scoring"))
    return replace(settings, k=args.k) if args.k else settings


def cmd_score(args):
    from .stages import score

    _threads(args)
    score(args.embeddings, args.manifests, _score_settings(args, args.machine or ""), args.out, args.info,
          args.roc, args.histogram, args.ground_truth or None, args.bank_embeddings, args.bank_manifests)


def cmd_evaluate(args):
    """Score every machine type's embeddings; write scores, submission files, plots and tables."""
    from .stages import evaluate

    if len(args.embeddings) != len(args.manifests):
        raise SystemExit("evaluate: give one --manifests file per --embeddings file, in the same order")
    evaluate(args.embeddings, args.manifests, lambda machine: _score_settings(args, machine), args.out, args.ground_truth)
    tables = Run(args.out).tables
    print(tables.dcase[1].read_text())
    print(tables.auroc[1].read_text())


def cmd_submission(args):
    from .stages import submission

    submission(args.scores, args.section, args.out_scores, args.out_decisions)


def _tables(args):
    """The table files: each one as given, else where --tables-dir puts it."""
    from dataclasses import fields, replace

    if args.tables_dir is None and not all(getattr(args, f.name) for f in fields(Tables)):
        raise SystemExit(f"{args.command}: give --tables-dir, or every one of --auroc --dcase --means --decisions --summary")
    tables = Tables.in_folder(args.tables_dir or ".")
    given = {}
    for name, value in ((f.name, getattr(args, f.name)) for f in fields(Tables)):
        default = getattr(tables, name)
        if isinstance(value, list):  # CSV and Markdown
            given[name] = tuple(map(Path, value))
        elif value and isinstance(default, tuple):  # the CSV alone (what the report reads): its Markdown lies beside it
            given[name] = (Path(value), Path(value).with_suffix(".md"))
        elif value:
            given[name] = Path(value)
    return replace(tables, **given)


def cmd_aggregate(args):
    from .stages import aggregate

    aggregate(args.scores, args.infos, _tables(args))


def cmd_report(args):
    import yaml

    from .stages import report

    config = json.loads(args.config_json) if args.config_json else yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    report(_tables(args), args.plots, config, args.out, args.results_dir, args.training_summary, args.features)


def cmd_fuse(args):
    from .stages import fuse

    if len(args.scores) != len(args.infos):
        raise SystemExit("fuse: give one --infos file per --scores file, in the same order")
    fuse(args.scores, args.infos, args.threshold_quantile, args.out, args.info)


def cmd_compare(args):
    from .stages import compare

    table = compare(json.loads(args.runs_json), args.reference, args.bootstrap, args.table, args.plot, args.html,
                    json.loads(args.run_tables_json or "{}"), args.seed)
    print(table[(table["machine_type"] == "all") & (table["statistic"] == "official score")].to_string(index=False))


def cmd_model_card(args):
    from .model_card import write_encoder_card

    write_encoder_card(args.out, args.summary, args.auroc, args.training_summary, args.manifests,
                       json.loads(args.config_json), args.command)


def cmd_publish(args):
    from .publish import publish

    plan = publish(args.encoder, args.repo_id, args.private, args.adapter, args.dry_run)
    verb = "would upload" if args.dry_run else "uploaded"
    for local, in_repo in plan:
        print(f"{verb} {local} -> {args.repo_id}/{in_repo} ({local.stat().st_size} bytes)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eat-asd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        s = sub.add_parser(name, help=help_, description=help_)
        s.set_defaults(func=func)
        return s

    def common(s, settings=True, device=False, threads_help="CPU threads for torch"):
        s.add_argument("--config", help="workflow config file (YAML) to take settings from")
        if settings:
            s.add_argument("--settings", help="JSON of this stage's settings (overrides --config)")
        s.add_argument("--threads", type=int, help=threads_help)
        if device:
            # an execution setting, not part of the science config: the workflow's jobs take it from the environment
            s.add_argument("--device", default=os.environ.get(DEVICE_ENV, "auto"),
                           help=f"auto, cpu, cuda, cuda:N or mps (default: ${DEVICE_ENV}, else auto)")

    s = add("demo", cmd_demo, "write the synthetic demo data and a small random EAT checkpoint")
    s.add_argument("out", nargs="?", help="folder for the demo data (OUT/data) and encoder (OUT/encoder)")
    s.add_argument("--data-root", help="where the demo data goes (default OUT/data)")
    s.add_argument("--encoder", help="where the demo encoder goes (default OUT/encoder)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the data and the encoder weights")
    s.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds")
    s.add_argument("--train-source", type=int, default=24, help="source-domain training clips per machine type")
    s.add_argument("--train-target", type=int, default=4, help="target-domain training clips per machine type")
    s.add_argument("--test-per-cell", type=int, default=10, help="test clips per domain and label")
    s.add_argument("--channels", type=int, choices=[1, 2], default=1,
                   help="1: mono clips; 2: stereo, a far microphone (the machine quieter, under more noise) in channel 1")

    s = add("discover", cmd_discover, "find the clips under a data root and write a manifest CSV")
    s.add_argument("data_root", help="folder with the clips in a DCASE Task 2 layout")
    s.add_argument("--machine", help="only this machine type")
    s.add_argument("--part", choices=PARTS, help="only this part (with --machine): train or test")
    s.add_argument("--out", required=True, help="manifest CSV to write")

    s = add("features", cmd_features, "compute and cache the EAT fbank features of a machine type")
    common(s, device=True)
    s.add_argument("--manifest", required=True, help="manifest CSV of the clips (from `discover`)")
    s.add_argument("--data-root", required=True, help="the data root the manifests' clip paths are relative to")
    s.add_argument("--out", required=True, help="feature file to write (safetensors)")
    s.add_argument("--batch-size", type=int, default=32, help="clips per fbank batch")

    s = add("train", cmd_train, "fine-tune the shared encoder on the training normals of all given machine types")
    common(s, device=True, threads_help=f"CPU threads for torch (default: ${TRAIN_THREADS_ENV}, else every CPU this process "
                                           "may use); recorded in the summary: the trained weights depend on it")
    s.add_argument("--encoder", required=True, help="Hub id or local folder of the pre-trained EAT")
    s.add_argument("--encoder-revision", help="Hub branch, tag or commit of --encoder (default or empty: main)")
    s.add_argument("--features", nargs="+", required=True, help="feature files of the training machine types")
    s.add_argument("--data-root", help="folder the manifests' clip paths are relative to (train.noise_mix reads the clips)")
    s.add_argument("--manifests", nargs="+", required=True, help="their manifests, in the same order")
    s.add_argument("--feature-settings", help="JSON of the feature settings the files were made with")
    s.add_argument("--mode", choices=section_schema("finetune")["properties"]["mode"]["enum"],
                   help="fine-tuning mode (overrides the settings)")
    s.add_argument("--out", required=True, help="folder for the encoder, the adapter, the log and the summary")

    s = add("embed", cmd_embed, "embed a machine type's memory-bank and test clips")
    common(s, device=True)
    s.add_argument("--encoder", required=True, help=f"encoder folder (e.g. {Run(default('results')).training.encoder})")
    s.add_argument("--features", nargs="+", required=True, help="feature files of the machine type")
    s.add_argument("--manifests", nargs="+", required=True, help="their manifests, in the same order")
    s.add_argument("--data-root", required=True, help="the data root the manifests' clip paths are relative to")
    s.add_argument("--machine", help="machine type whose overrides apply (with --config)")
    s.add_argument("--batch-size", type=int, help="clips per encoder batch (overrides the settings' embedding.batch_size)")
    s.add_argument("--out", required=True, help=f"embeddings file to write ({EMBEDDINGS_SUFFIX})")

    s = add("score", cmd_score, "kNN scores, decisions and plots of one machine type")
    common(s)
    s.add_argument("--embeddings", required=True, help="the machine type's embeddings (from `embed`)")
    s.add_argument("--manifests", nargs="+", required=True, help="the machine type's manifest(s)")
    s.add_argument("--machine", help="machine type whose overrides apply (with --config)")
    s.add_argument("-k", type=int, help="neighbours (overrides the settings)")
    s.add_argument("--out", required=True, help="score table to write (CSV, one row per test clip)")
    s.add_argument("--info", required=True, help="JSON to write: threshold, settings, bank size, training scores")
    s.add_argument("--roc", help="write the ROC curves (PNG) here")
    s.add_argument("--histogram", help="write the score histograms (PNG) here")
    s.add_argument("--ground-truth", metavar="DIR", help="official ground-truth folder giving the test clips labels and domains")
    s.add_argument("--bank-embeddings", nargs="*", default=[], help="other machine types' embeddings (bank_split = all)")
    s.add_argument("--bank-manifests", nargs="*", default=[], help="their training manifests")

    s = add("submission", cmd_submission, "the DCASE submission files of one section from a score table")
    s.add_argument("--scores", required=True, help="a machine type's score table (CSV, from `score`)")
    s.add_argument("--section", required=True, help="the section, e.g. 00")
    s.add_argument("--out-scores", required=True, help=f"anomaly score file to write ({fill(SUBMISSION, kind=ANOMALY_SCORE)})")
    s.add_argument("--out-decisions", required=True, help=f"decision file to write ({fill(SUBMISSION, kind=DECISION_RESULT)})")

    s = add("evaluate", cmd_evaluate, "score all machine types with k neighbours and write the metric tables")
    common(s)
    s.add_argument("-k", type=int, help="neighbours (overrides the settings)")
    s.add_argument("--embeddings", nargs="+", required=True, help="embeddings files, one per machine type")
    s.add_argument("--manifests", nargs="+", required=True, help="one manifest per embeddings file, in the same order")
    s.add_argument("--ground-truth", metavar="DIR", help="labels and domains of unlabeled evaluation clips: a folder with "
                   "the official evaluators' ground_truth_data/, ground_truth_domain/ (and ground_truth_attributes/)")
    s.add_argument("--out", required=True, help="results folder to write, laid out as the workflow's (scores, submission files, plots, tables)")

    def table_options(s, markdown):
        usual = ", ".join(Path(p).name for p in Tables.in_folder(".").outputs().values() if not p.endswith(".md"))
        s.add_argument("--tables-dir", help=f"folder of the tables under their usual names ({usual}, and Markdown beside "
                                            "each CSV); options below override single files")
        for name, what in (("auroc", "AUROC table"), ("dcase", "official result table"), ("means", "evaluator's means"),
                           ("decisions", "decisions table")):
            if markdown:
                s.add_argument(f"--{name}", nargs=2, metavar=("CSV", "MD"), help=f"the {what} as CSV and Markdown")
            else:
                s.add_argument(f"--{name}", metavar="CSV", help=f"the {what} (CSV)")
        s.add_argument("--summary", metavar="JSON", help="the summary numbers and notes (JSON)")

    s = add("aggregate", cmd_aggregate, "the official result table, AUROC and decisions tables from per-machine score files")
    s.add_argument("--scores", nargs="+", required=True, help="score tables of the machine types (from `score`)")
    s.add_argument("--infos", nargs="*", default=[], help="their JSON files (from `score`), for the decision thresholds")
    table_options(s, markdown=True)

    s = add("report", cmd_report, "the HTML report")
    table_options(s, markdown=False)
    s.add_argument("--plots", nargs="*", default=[], help="plot files <machine>_<kind>.png to show")
    s.add_argument("--results-dir", required=True, help="the results folder (for links to its folders)")
    s.add_argument("--config", help="config file to show in the report")
    s.add_argument("--config-json", help="the configuration as JSON (what the workflow passes)")
    s.add_argument("--training-summary", help="the encoder's training summary (JSON)")
    s.add_argument("--features", nargs="*", default=[], help="feature files whose audio notes (resampling, mix-down, "
                                                              "padding of clips) the report lists")
    s.add_argument("--out", required=True, help="HTML file to write")

    s = add("fuse", cmd_fuse, "a score-level ensemble of one machine type's score tables (each normalised on its training clips)")
    s.add_argument("--scores", nargs="+", required=True, help="the members' score tables of one machine type (from `score`)")
    s.add_argument("--infos", nargs="+", required=True, help="their JSON files (from `score`): training scores and sections")
    s.add_argument("--threshold-quantile", type=float, default=0.9, help="quantile of the gamma fitted to the fused training scores")
    s.add_argument("--out", required=True, help="fused score table to write (CSV)")
    s.add_argument("--info", required=True, help="JSON to write: threshold, members, training scores")

    s = add("compare", cmd_compare, "compare variants over seeds: means, bootstrap intervals, paired differences")
    s.add_argument("--runs-json", required=True, help='JSON {variant: {seed: [score tables of every machine type]}}')
    s.add_argument("--reference", required=True, help="the variant the others are compared with")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    s.add_argument("--table", nargs=2, metavar=("CSV", "MD"), required=True, help="comparison table to write")
    s.add_argument("--plot", required=True, help="comparison plot to write (PNG)")
    s.add_argument("--html", required=True, help="experiments page to write (HTML)")
    s.add_argument("--run-tables-json", help="JSON {run name: its result table}, linked from the page")

    s = add("model-card", cmd_model_card, "the fine-tuned encoder's model card (README.md) from the run's tables")
    results = Run(default("results"))
    s.add_argument("--summary", required=True, help=f"the run's summary ({results.tables.summary})")
    s.add_argument("--auroc", required=True, help=f"the run's AUROC table ({results.tables.auroc[0]})")
    s.add_argument("--training-summary", required=True, help=f"the training summary ({results.training.summary})")
    s.add_argument("--manifests", nargs="+", required=True, help="the run's manifests (clip counts)")
    s.add_argument("--config-json", required=True, help="the run's configuration as JSON")
    s.add_argument("--command", default="", help="the command that started the run")
    s.add_argument("--out", required=True, help="README.md to write (in the encoder folder)")

    s = add("publish", cmd_publish, "upload the fine-tuned encoder (and its LoRA adapter) to the Hugging Face Hub")
    s.add_argument("--repo-id", required=True, help="owner/name on the Hub")
    s.add_argument("--encoder", default=Run(default("results")).training.encoder,
                   help="the fine-tuned encoder folder (default: where the workflow writes it)")
    s.add_argument("--adapter", help=f"also upload this LoRA adapter folder (e.g. {results.training.adapter})")
    s.add_argument("--private", action="store_true", help="create the repo private")
    s.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .errors import EatAsdError

    try:
        args.func(args)
    except (EatAsdError, FileNotFoundError) as err:
        # one line that names the file or setting at fault (the traceback too with -v)
        log.error("%s: %s", args.command, err, exc_info=args.verbose)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
