"""Throughput and memory of every stage, as ratios to the per-clip baseline and to the matmul peak
measured in the same run.

    python -m benchmarks            # full run (EAT-base size, 10-s clips; a few minutes on 2 cores)
    python -m benchmarks --smoke    # tiny sizes, seconds (CI)

Prints a table and writes benchmarks/results/latest.{md,json} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the table

from eat_asd.audio import SAMPLE_RATE, eat_fbank, eat_fbank_batch  # noqa: E402 (after the environment is set)
from eat_asd.eat import EAT, EATConfig, count_flops  # noqa: E402 (after the environment is set)
from eat_asd.embed import EmbedSettings, embed_features  # noqa: E402 (after the environment is set)
from eat_asd.runtime import autocast, inference_weights, resolve_precision  # noqa: E402 (after the environment is set)
from eat_asd.scoring import knn_distance  # noqa: E402 (after the environment is set)


@dataclass
class Sizes:
    seconds: float = 10.0
    frames: int = 1024
    config: EATConfig = None
    fbank_clips: int = 32
    encoder_batches: tuple = (1, 4)
    bf16_batches: tuple = (1, 2, 4)
    machine_clips: int = 24  # clips embedded in the end-to-end comparison
    banks: tuple = (1_000, 10_000, 100_000)
    queries: int = 2_000
    train_batch: int = 8
    demo: bool = True

    @classmethod
    def smoke(cls):
        return cls(seconds=1.0, frames=96, config=EATConfig(embed_dim=64, depth=2, num_heads=4, max_length=16),
                   fbank_clips=4, encoder_batches=(1, 4), bf16_batches=(1, 2), machine_clips=4, banks=(500, 2_000), queries=200,
                   train_batch=4, demo=False)


def best_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak(n: int = 2048, dtype=torch.float32) -> float:
    """GFLOP/s of a large square matmul in `dtype`: the machine's practical limit in that precision."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = best_time(lambda: a @ b, repeats=5, warmup=2)
    return 2 * n**3 / t / 1e9


def clips(sizes: Sizes, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(sizes.seconds * SAMPLE_RATE))).astype(np.float32) for _ in range(n)]


def bench_fbank(sizes: Sizes, rows: list):
    waves = clips(sizes, sizes.fbank_clips)
    one = best_time(lambda: [eat_fbank(w, SAMPLE_RATE, sizes.frames) for w in waves], repeats=5)
    batched = best_time(lambda: eat_fbank_batch(waves, SAMPLE_RATE, sizes.frames), repeats=5)
    n = len(waves)
    rows.append(("fbank, one clip at a time", f"{n / one:.1f} clips/s", "1.00x", ""))
    rows.append(("fbank, batched", f"{n / batched:.1f} clips/s", f"{one / batched:.2f}x vs one at a time", ""))
    cached = bench_feature_cache(sizes, waves)
    rows.append(("fbank, read from the feature cache", f"{n / cached:.0f} clips/s", f"{one / cached:.0f}x vs one at a time",
                 "random batches of 8, as training epochs read them"))
    return dict(fbank_one_clips_per_s=n / one, fbank_batched_clips_per_s=n / batched, fbank_cached_clips_per_s=n / cached)


def bench_feature_cache(sizes: Sizes, waves: list[np.ndarray]) -> float:
    """Seconds to read every clip's features back from a feature file, in shuffled batches."""
    import soundfile as sf

    from eat_asd.features import FeatureFile, FeatureSettings, build_feature_file

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, w in enumerate(waves):
            paths.append(f"{tmp}/clip_{i}.wav")
            sf.write(paths[-1], w, SAMPLE_RATE, subtype="FLOAT")
        build_feature_file(paths, [f"k{i}" for i in range(len(paths))], FeatureSettings(sizes.frames), f"{tmp}/f.safetensors")
        features = FeatureFile(f"{tmp}/f.safetensors")
        order = np.random.default_rng(0).permutation(len(paths))
        return best_time(lambda: [features.read(np.sort(order[s : s + 8])) for s in range(0, len(order), 8)], repeats=5)


def bench_encoder(sizes: Sizes, model: EAT, peaks: dict, rows: list):
    """Forward passes as the embed job runs them: float32, and bf16 (weights cast once, autocast)."""
    out = {}
    flops = count_flops(model.config, sizes.frames)
    cpu = torch.device("cpu")
    for precision, batches in (("float32", sizes.encoder_batches), ("bfloat16", sizes.bf16_batches)):
        run_model = inference_weights(model, cpu, precision)
        tag = "" if precision == "float32" else "_bf16"
        for b in batches:
            x = torch.randn(b, 1, sizes.frames, 128)

            def run():
                with torch.inference_mode(), autocast(cpu, precision):
                    run_model(x)

            t = best_time(run, repeats=3)
            rate = b * flops / t / 1e9
            out[f"encoder{tag}_b{b}_clips_per_s"] = b / t
            out[f"encoder{tag}_b{b}_gflops"] = rate
            out[f"encoder{tag}_b{b}_peak_ratio"] = rate / peaks[precision]
            rows.append((f"encoder forward, {precision}, batch {b}", f"{b / t:.2f} clips/s",
                         f"{rate / peaks[precision]:.2f} of {precision} matmul peak", f"{rate:.0f} GFLOP/s, {flops / 1e9:.1f} GFLOP/clip"))
    return out


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def bench_bf16_accuracy(sizes: Sizes, model: EAT, rows: list):
    """Embeddings in bf16 against float32: on the EAT-base-sized encoder and on the demo encoder."""
    from eat_asd.demo import make_demo_encoder
    from eat_asd.eat import load_eat

    feats = eat_fbank_batch(clips(sizes, 4), SAMPLE_RATE, sizes.frames)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        demo = load_eat(make_demo_encoder(Path(tmp) / "demo", max_length=max(64, sizes.frames // 16)))
    for name, encoder in (("encoder_size", model), ("demo_encoder", demo)):
        ref = embed_features(encoder, feats, EmbedSettings(precision="float32"), device="cpu")
        low = embed_features(encoder, feats, EmbedSettings(precision="bfloat16"), device="cpu")
        out[f"bf16_min_cos_{name}"] = cos = min_cosine(ref, low)
        label = "benchmark encoder" if name == "encoder_size" else "demo encoder (96-dim, 3 blocks)"
        rows.append((f"bf16 embeddings vs float32, {label}", f"min cosine {cos:.5f}", "", f"{len(feats)} clips, CLS token"))
    return out


def bench_embed_end_to_end(sizes: Sizes, model: EAT, rows: list):
    """A machine type's clips from waveforms to embeddings: the per-clip loop vs the pipeline."""
    waves = clips(sizes, sizes.machine_clips)

    def per_clip_loop():  # how the original scripts embed: features per clip, batch 1, autograd on
        out = []
        for w in waves:
            feats = eat_fbank(w, SAMPLE_RATE, sizes.frames)
            out.append(model(feats[None, None])[:, 0].detach())
        return out

    def pipeline(precision="float32"):  # batched fbank (cached once), batched inference-mode embedding
        feats = eat_fbank_batch(waves, SAMPLE_RATE, sizes.frames)
        return embed_features(model, feats, EmbedSettings(batch_size=8, precision=precision), device="cpu")

    feats = eat_fbank_batch(waves, SAMPLE_RATE, sizes.frames)
    variants = dict(base=per_clip_loop, ours=pipeline, auto=lambda: pipeline("auto"),
                    cached=lambda: embed_features(model, feats, EmbedSettings(batch_size=8, precision="float32"), device="cpu"))
    times = {name: float("inf") for name in variants}
    for _ in range(2):  # in turns, so that load from other work on the machine hits every variant alike
        for name, fn in variants.items():
            times[name] = min(times[name], best_time(fn, repeats=1, warmup=0))
    base, ours, auto, cached = (times[k] for k in ("base", "ours", "auto", "cached"))
    n = len(waves)
    rows.append(("embed a machine type, per-clip loop", f"{n / base:.2f} clips/s", "1.00x", "batch 1, features per clip, autograd on"))
    rows.append(("embed a machine type, pipeline, float32", f"{n / ours:.2f} clips/s", f"{base / ours:.2f}x vs per-clip loop",
                 "batched fbank + batched inference_mode"))
    rows.append(("embed a machine type, from cached features, float32", f"{n / cached:.2f} clips/s",
                 f"{base / cached:.2f}x vs per-clip loop", "what the embed job does"))
    resolved = resolve_precision("auto", torch.device("cpu"))
    cos = min_cosine(pipeline("float32"), pipeline("auto"))
    rows.append(("embed a machine type, pipeline, precision auto", f"{n / auto:.2f} clips/s", f"{base / auto:.2f}x vs per-clip loop",
                 f"auto = {resolved} here; min cosine to float32 {cos:.5f}"))
    return dict(embed_loop_clips_per_s=n / base, embed_pipeline_clips_per_s=n / ours, embed_cached_clips_per_s=n / cached,
                embed_speedup=base / ours, embed_auto_clips_per_s=n / auto, embed_auto_speedup=base / auto,
                embed_auto_precision=resolved, embed_auto_min_cos=cos)


KNN_CHILD = """
import re, sys, time, numpy as np, torch
from eat_asd.scoring import knn_distance
def vm(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
n_bank, n_q = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
bank = rng.standard_normal((n_bank, 768), dtype=np.float32)
q = rng.standard_normal((n_q, 768), dtype=np.float32)
knn_distance(q[:64], bank[:1000], 1)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = vm("VmRSS")
t0 = time.perf_counter(); knn_distance(q, bank, 1); t = time.perf_counter() - t0
print(t, vm("VmHWM") - before)
"""


def bench_knn(sizes: Sizes, peak: float, rows: list):
    out = {}
    for n_bank in sizes.banks:
        res = subprocess.run([sys.executable, "-c", KNN_CHILD, str(n_bank), str(sizes.queries)],
                             capture_output=True, text=True, check=True)
        t, extra_mb = map(float, res.stdout.split())
        rate = 2 * sizes.queries * n_bank * 768 / t / 1e9
        data_mb = n_bank * 768 * 4 / 2**20
        out[f"knn_{n_bank}_queries_per_s"] = sizes.queries / t
        out[f"knn_{n_bank}_gflops"] = rate
        out[f"knn_{n_bank}_peak_ratio"] = rate / peak
        rows.append((f"kNN, bank {n_bank:,} x 768", f"{sizes.queries / t:,.0f} queries/s", f"{rate / peak:.2f} of matmul peak",
                     f"peak memory above inputs {extra_mb:.0f} MB (bank {data_mb:.0f} MB)"))
    return out


def bench_training(sizes: Sizes, config: EATConfig, peaks: dict, rows: list):
    from eat_asd.losses import SoftmaxHead
    from eat_asd.train import AuxClassifier, TrainSettings, prepare_encoder

    out = {}
    half = sizes.frames // 2 // 16 * 16
    top = tuple(range(config.depth - 2, config.depth))
    variants = [("LoRA all blocks", TrainSettings(), sizes.frames, "float32"),
                (f"LoRA top 2 blocks {list(top)}", TrainSettings(blocks=top), sizes.frames, "float32"),
                ("LoRA all blocks, crop to half", TrainSettings(), half, "float32"),
                ("LoRA all blocks, bf16", TrainSettings(), sizes.frames, "bfloat16")]
    base_rate = None
    cpu = torch.device("cpu")
    for name, settings, frames, precision in variants:
        torch.manual_seed(0)
        model = AuxClassifier(prepare_encoder(EAT(config), settings), SoftmaxHead(config.embed_dim, 10))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randn(sizes.train_batch, 1, frames, 128)
        y = torch.randint(0, 10, (sizes.train_batch,))

        def step():  # as train.train_encoder runs it
            with autocast(cpu, precision):
                logits = model(x, y)
            torch.nn.functional.cross_entropy(logits.float(), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = best_time(step, repeats=2, warmup=1)
        fwd = count_flops(config, frames)
        # backward: activation gradients through every block LoRA touches (about one forward each)
        first = min(settings.blocks) if settings.blocks else 0
        useful = sizes.train_batch * fwd * (1 + (config.depth - first) / config.depth)
        rate = useful / t / 1e9
        clips_per_s = sizes.train_batch / t
        base_rate = base_rate or clips_per_s
        out[f"train_{name}"] = dict(clips_per_s=clips_per_s, gflops=rate, peak_ratio=rate / peaks[precision])
        rows.append((f"training step, {name}", f"{clips_per_s:.2f} clips/s", f"{rate / peaks[precision]:.2f} of {precision} matmul peak",
                     f"{clips_per_s / base_rate:.2f}x vs all blocks float32, {frames} frames, batch {sizes.train_batch}"))
    return out


def bench_workflow(rows: list):
    """The demo workflow: wall time, peak RSS, and jobs rerun after one machine's setting changes."""
    import yaml

    work = Path(tempfile.mkdtemp(prefix="eat-asd-bench-"))
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(work / "config.yaml")]
    # a wrapper process reports the peak RSS of the workflow's own processes (the largest job)
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", wrapper, *base, "--cores", str(os.cpu_count())], env=env, check=True,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss_mb = int(res.stdout.split()[-1]) / 1024
    cfg["overrides"] = {"fan": {"scoring": {"k": 3}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    dry = subprocess.run(base + ["-n", "--quiet", "rules"], env=env, check=True, capture_output=True, text=True).stdout
    stats = dry.split("Job stats:")[1].split("total")
    total = int(stats[1].split()[0])
    reran = total - 1  # minus the 'all' target
    full = subprocess.run(base + ["-n", "--quiet", "rules", "--forceall"], env=env, check=True, capture_output=True, text=True).stdout
    all_jobs = int(full.split("Job stats:")[1].split("total")[1].split()[0]) - 1
    rows.append(("demo workflow, 2 CPU cores", f"{wall:.0f} s wall", f"peak RSS {rss_mb:.0f} MB (largest job)",
                 f"after editing fan's k: {reran} of {all_jobs} jobs rerun"))
    return dict(demo_wall_s=wall, demo_peak_rss_mb=rss_mb, rerun_jobs=reran, all_jobs=all_jobs)


def targets(results: dict, sizes: Sizes) -> list[dict]:
    """The speed goals of the project, each with its measured ratio."""
    largest_bank = max(sizes.banks)
    measured = [
        ("encoder forward float32, best batch, of the float32 matmul peak", 0.9,
         max(results[f"encoder_b{b}_peak_ratio"] for b in sizes.encoder_batches)),
        ("encoder forward bf16, best batch, of the bf16 matmul peak", 0.8,
         max(results[f"encoder_bf16_b{b}_peak_ratio"] for b in sizes.bf16_batches)),
        ("LoRA training step (all blocks) float32, of the float32 matmul peak", 0.6, results["train_LoRA all blocks"]["peak_ratio"]),
        ("LoRA training step (all blocks) bf16, of the bf16 matmul peak", 0.6, results["train_LoRA all blocks, bf16"]["peak_ratio"]),
        ("embedding a machine type with precision auto vs the float32 per-clip loop", 4.0, results["embed_auto_speedup"]),
        (f"kNN over a {largest_bank:,} bank, of the float32 matmul peak", 0.5, results[f"knn_{largest_bank}_peak_ratio"]),
    ]
    return [dict(what=what, goal=goal, measured=value, met=bool(value >= goal)) for what, goal, value in measured]


class ProgressRows(list):
    """The table's rows, each also printed as soon as it is measured."""

    def append(self, row):
        print("  " + " | ".join(map(str, row)), flush=True)
        super().append(row)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def load_line() -> str:
    """The load averages (1, 5, 15 min) as `uptime` shows them: other work on a shared machine skews timings."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--no-workflow", action="store_true", help="skip the end-to-end demo workflow")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest"))
    args = p.parse_args(argv)
    sizes = Sizes.smoke() if args.smoke else Sizes(config=EATConfig())
    torch.manual_seed(0)
    model = EAT(sizes.config).eval()
    rows = ProgressRows()
    results = dict(machine=machine_line(), smoke=args.smoke, frames=sizes.frames)
    t0 = time.time()
    n_peak = 512 if args.smoke else 2048
    peaks = {"float32": [], "bfloat16": []}

    def peak_now(stage: str) -> dict:
        """The matmul peaks measured right before a stage: shared machines drift in clock speed and
        load over minutes, and a ratio is only fair against the limit of the same moment."""
        now = {}
        for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            now[precision] = matmul_peak(n_peak, dtype)
            peaks[precision].append(now[precision])
            rows.append((f"{precision} matmul peak before {stage}", f"{now[precision]:.0f} GFLOP/s", "1.00",
                         f"{n_peak}x{n_peak}, reference for the {precision} ratios below; {load_line()}"))
        return now

    results.update(bench_fbank(sizes, rows))
    results.update(bench_encoder(sizes, model, peak_now("the encoder"), rows))
    results.update(bench_embed_end_to_end(sizes, model, rows))
    results.update(bench_bf16_accuracy(sizes, model, rows))
    results.update(bench_knn(sizes, peak_now("kNN")["float32"], rows))
    results.update(bench_training(sizes, sizes.config, peak_now("training"), rows))
    results["matmul_peak_gflops"] = max(peaks["float32"])
    results["matmul_peaks_gflops"] = peaks["float32"]
    results["bf16_matmul_peaks_gflops"] = peaks["bfloat16"]
    results["load_after"] = load_line()
    if sizes.demo and not args.no_workflow:
        results.update(bench_workflow(rows))
    results["seconds"] = time.time() - t0
    results["targets"] = targets(results, sizes)

    header = ("stage", "throughput", "ratio", "notes")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    target_lines = [f"target {t['what']}: {t['measured']:.2f} (goal {t['goal']:g}, {'met' if t['met'] else 'NOT met'})"
                    for t in results["targets"]]
    if args.smoke:
        target_lines.append("(smoke sizes: the targets apply to the full run only)")
    print(f"machine: {results['machine']}\n" + "\n".join(lines + target_lines) + f"\n({results['seconds']:.0f} s)")
    md = [f"Machine: {results['machine']}; clips of {sizes.seconds:g} s ({sizes.frames} frames); "
          f"encoder {'tiny (smoke)' if args.smoke else 'EAT-base size, random weights'}.", "",
          "| " + " | ".join(header) + " |", "|---|---|---|---|"] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    md += ["", "Targets:", ""] + [f"- {line}" for line in target_lines]
    md += ["", f"Load averages: before each peak in the notes above; after the run {results['load_after']}."]
    scale = Path(args.out).parent / "scale.md"
    if scale.is_file():  # python -m benchmarks.scale: the workflow at DCASE size, run separately (it takes long)
        md += ["", "## The workflow at DCASE 2023 development-set size (python -m benchmarks.scale)", "", scale.read_text().strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
