"""The workflow at a fraction of the DCASE 2023 development set's size, on synthetic data.

    python -m benchmarks.scale                    # 10%, 30% and 100% (about 8,400 clips of 10 s at 100%)
    python -m benchmarks.scale --fractions 0.1 0.3 --smoke-seconds 1   # seconds-long version (tests)
    python -m benchmarks.scale --channels 2       # stereo clips, as DCASE 2026 ships them

Each run writes synthetic clips in the DCASE 2023 layout (7 machine types, 990 source + 10 target
training normals and 200 test clips each at 100%), a small random encoder (so that the encoder does
not dominate), runs Snakemake on 2 cores and records, per stage, the summed wall time of its jobs and
the largest peak RSS of any of them (sampled from /proc every 0.2 s), plus the planning time (a dry
run) and the whole run's wall time. Writes benchmarks/results/scale.{md,json}: the growth from the
smallest to the largest fraction, against the growth of the clip count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from eat_asd.audio import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[1]

# DCASE 2023 Task 2 development set: machine types, clips per machine type at full size
MACHINES = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
TRAIN_SOURCE, TRAIN_TARGET, TEST_PER_CELL = 990, 10, 50  # test: per domain x label


def clip_counts(fraction: float) -> dict[str, int]:
    return dict(train_source=max(1, round(TRAIN_SOURCE * fraction)), train_target=max(1, round(TRAIN_TARGET * fraction)),
                test_per_cell=max(2, round(TEST_PER_CELL * fraction)))


def write_data(root: Path, fraction: float, seconds: float, channels: int = 1) -> int:
    """Synthetic clips in the DCASE 2023 dev layout: a hum per machine and attribute value over noise,
    anomalies with an extra tone; with channels = 2, stereo as in DCASE 2026 (channel 0 the mono clip,
    channel 1 a far microphone: eat_asd.demo.far_microphone). Returns the number of clips."""
    from eat_asd.demo import far_microphone

    import numpy as np
    import soundfile as sf

    counts = clip_counts(fraction)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    total = 0
    for mi, machine in enumerate(MACHINES):
        rng = np.random.default_rng(mi)
        far_rng = np.random.default_rng([mi, 1])
        cells = [("train", "source", "normal", counts["train_source"]), ("train", "target", "normal", counts["train_target"])]
        cells += [("test", d, label, counts["test_per_cell"]) for d in ("source", "target") for label in ("normal", "anomaly")]
        for split, domain, label, count in cells:
            folder = root / "dev_data" / "raw" / machine / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                value = i % 2 + (2 if domain == "target" else 0)
                x = 0.3 * np.sin(2 * np.pi * (100 + 20 * mi + 15 * value) * t) + 0.1 * rng.standard_normal(n)
                if label == "anomaly":
                    x += 0.1 * np.sin(2 * np.pi * rng.uniform(900, 2500) * t)
                name = f"section_00_{domain}_{split}_{label}_{i:04d}_speed_{value}.wav"
                x = x.astype(np.float32)
                if channels == 2:
                    x = np.stack([x, far_microphone(far_rng, x)], axis=1)
                sf.write(folder / name, x, SAMPLE_RATE, subtype="PCM_16")
                total += 1
    return total


class JobMonitor:
    """Wall time and peak RSS of every workflow job, from /proc: the python processes below `root_pid`
    (the Snakemake run, not other work on the machine) that run an eat_asd stage. Peak RSS is the
    kernel's high-water mark (VmHWM), read every `interval` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.2):
        self.root, self.interval, self.jobs, self._stop = root_pid, interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @staticmethod
    def stage_of(args: list[str]) -> str | None:
        if not args or not Path(args[0]).name.startswith("python") or "snakemake" in args:
            return None
        for i, a in enumerate(args[1:], 1):
            if "eat_asd" in a or "eat-asd" in a:
                rest = [b for b in args[i + 1 :] if not b.startswith("-")]
                return rest[0] if rest else None
        return None

    def _run(self):
        while not self._stop.is_set():
            now = time.perf_counter()
            parents = {}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:  # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces
                    parents[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                except OSError:
                    pass
            for pid in parents:
                ancestor = parents.get(pid)
                while ancestor not in (None, "0", str(self.root)):
                    ancestor = parents.get(ancestor)
                if ancestor != str(self.root):
                    continue
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                    stage = self.stage_of([a for a in args if a])
                    if stage is None:
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)
                job = self.jobs.setdefault((pid, " ".join(args)), dict(stage=stage, start=now, end=now, peak_mb=0.0))
                job.update(end=now, peak_mb=max(job["peak_mb"], hwm))
            self._stop.wait(self.interval)

    def stages(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for job in self.jobs.values():
            s = out.setdefault(job["stage"], dict(jobs=0, seconds=0.0, peak_mb=0.0))
            s["jobs"] += 1
            s["seconds"] += job["end"] - job["start"] + self.interval / 2  # seen from first to last sample
            s["peak_mb"] = max(s["peak_mb"], job["peak_mb"])
        return out


def run_fraction(work: Path, fraction: float, seconds: float, cores: int, channels: int = 1) -> dict:
    import yaml

    from eat_asd.demo import make_demo_encoder

    t0 = time.perf_counter()
    clips = write_data(work / "data", fraction, seconds, channels)
    frames = int(round(seconds * 100 / 16)) * 16
    make_demo_encoder(work / "encoder", max_length=max(64, frames // 16))
    data_s = time.perf_counter() - t0
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(data_root=str(work / "data" / "dev_data"), encoder=str(work / "encoder"), results=str(work / "results"))
    cfg["features"]["target_frames"] = frames
    cfg["train"].update(epochs=1, batch_size=16, threads=cores)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(cores)]
    t0 = time.perf_counter()
    subprocess.run(cmd + ["-n", "--quiet"], env=env, check=True, capture_output=True)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        with JobMonitor(proc.pid) as monitor:
            proc.wait()
        log.seek(0)
        output = log.read()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"workflow at {fraction:g} failed:\n{output[-3000:]}")
    stages = monitor.stages()
    return dict(fraction=fraction, clips=clips, data_seconds=data_s, plan_seconds=plan_s, wall_seconds=wall,
                stages=stages, peak_mb=max(s["peak_mb"] for s in stages.values()))


ENCODER_STAGES = ("train", "embed")  # the encoder's compute lives here; the rest is the non-encoder part


def growth_table(runs: list[dict]) -> list[str]:
    small, big = runs[0], runs[-1]
    clip_growth = big["clips"] / small["clips"]
    columns = " | ".join(f"{r['fraction']:.0%} ({r['clips']:,} clips)" for r in runs)
    lines = [f"| stage | {columns} | growth {small['fraction']:.0%} to {big['fraction']:.0%} (clips x{clip_growth:.1f}) |",
             "|---" * (len(runs) + 2) + "|"]

    def row(name, values, unit, fmt):
        cells = [fmt.format(v) + unit for v in values]
        growth = values[-1] / values[0] if values[0] else float("nan")
        lines.append(f"| {name} | {' | '.join(cells)} | x{growth:.1f} |")

    for stage in sorted({s for r in runs for s in r["stages"]}):
        present = [r["stages"].get(stage, dict(jobs=0, seconds=0.0, peak_mb=0.0)) for r in runs]
        row(f"{stage} ({present[-1]['jobs']} jobs), time", [s["seconds"] for s in present], " s", "{:.1f}")
        row(f"{stage}, peak RSS of a job", [s["peak_mb"] for s in present], " MB", "{:.0f}")
    row("planning (dry run)", [r["plan_seconds"] for r in runs], " s", "{:.1f}")
    row("workflow wall time", [r["wall_seconds"] for r in runs], " s", "{:.0f}")
    non_encoder = [r["wall_seconds"] - sum(r["stages"].get(s, {}).get("seconds", 0.0) for s in ENCODER_STAGES) for r in runs]
    row("wall time minus train and embed jobs", non_encoder, " s", "{:.0f}")
    row("largest peak RSS of any job", [r["peak_mb"] for r in runs], " MB", "{:.0f}")
    return lines


def main(argv=None):
    from benchmarks.__main__ import load_line, machine_line

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    p.add_argument("--smoke-seconds", type=float, default=None, help="clip length instead of 10 s (tests)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--channels", type=int, choices=[1, 2], default=1, help="2: stereo clips as in DCASE 2026")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale"))
    p.add_argument("--keep", action="store_true", help="keep the work folders")
    args = p.parse_args(argv)
    seconds = args.smoke_seconds or 10.0
    runs = []
    for fraction in sorted(args.fractions):
        work = Path(tempfile.mkdtemp(prefix=f"eat-asd-scale-{fraction:g}-"))
        try:
            load = load_line()
            runs.append(run_fraction(work, fraction, seconds, args.cores, args.channels) | dict(load=load))
            print(f"{fraction:.0%}: {runs[-1]['clips']} clips, {runs[-1]['wall_seconds']:.0f} s wall, "
                  f"largest job {runs[-1]['peak_mb']:.0f} MB ({load})", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    lines = growth_table(runs)
    stereo = ", stereo (features.channels 0)" if args.channels == 2 else ""
    head = (f"Machine: {machine_line()}; synthetic clips of {seconds:g} s{stereo} in the DCASE 2023 dev layout, small random "
            f"encoder, {args.cores} cores, train.epochs 1. Load before each run: "
            + "; ".join(f"{r['fraction']:.0%}: {r['load']}" for r in runs) + ".")
    print("\n".join([head, ""] + lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join([head, ""] + lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(dict(machine=machine_line(), seconds=seconds, runs=runs), indent=2) + "\n")


if __name__ == "__main__":
    main()
