import json
import subprocess
import sys

from conftest import REPO


def test_benchmark_smoke_run_prints_the_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path / "b")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "of float32 matmul peak" in out.stdout and "of bfloat16 matmul peak" in out.stdout and "vs per-clip loop" in out.stdout
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["matmul_peak_gflops"] > 0 and min(results["bf16_matmul_peaks_gflops"]) > 0 and results["embed_speedup"] > 0
    assert results["encoder_bf16_b2_peak_ratio"] > 0 and results["train_LoRA all blocks, bf16"]["peak_ratio"] > 0
    assert results["embed_auto_speedup"] > 0 and results["embed_auto_precision"] in ("float32", "bfloat16")
    assert min(results["bf16_min_cos_encoder_size"], results["bf16_min_cos_demo_encoder"]) > 0.99
    assert {t["what"].split(",")[0] for t in results["targets"]} >= {"encoder forward bf16", "LoRA training step (all blocks) bf16"}
    md = (tmp_path / "b.md").read_text()
    assert md.count("\n|") >= 10 and "load average" in md


def test_scale_data_has_the_dcase_2023_layout_and_counts(tmp_path):
    from benchmarks.scale import MACHINES, clip_counts, write_data

    from eat_asd.data import discover

    n = write_data(tmp_path, 0.01, 0.1)
    counts = clip_counts(0.01)
    per_machine = counts["train_source"] + counts["train_target"] + 4 * counts["test_per_cell"]
    assert n == len(MACHINES) * per_machine and clip_counts(1.0) == dict(train_source=990, train_target=10, test_per_cell=50)
    found = discover(tmp_path / "dev_data")
    assert len(found) == n and set(found["machine"]) == set(MACHINES) and set(found["channels"]) == {1}
    # stereo, as DCASE 2026: channel 0 is the mono clip
    import soundfile as sf

    write_data(tmp_path / "stereo", 0.01, 0.1, channels=2)
    stereo = discover(tmp_path / "stereo" / "dev_data")
    assert set(stereo["channels"]) == {2} and len(stereo) == n
    one = found["path"].iloc[0].replace(str(tmp_path), str(tmp_path / "stereo"))
    assert (sf.read(one)[0][:, 0] == sf.read(found["path"].iloc[0])[0]).all()


def test_job_monitor_sees_only_its_own_stage_jobs_with_their_peak_memory():
    from benchmarks.scale import JobMonitor

    child = ("import sys, time; x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)")
    outer = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}, "
                              "'eat_asd_stage.py', 'features', '--out', 'x'])"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)", "eat_asd_stage.py", "score"])
    with JobMonitor(outer.pid, interval=0.1) as monitor:
        outer.wait()
    other.wait()
    stages = monitor.stages()
    assert set(stages) == {"features"} and stages["features"]["jobs"] == 1
    assert 200 < stages["features"]["peak_mb"] < 400 and 1.0 < stages["features"]["seconds"] < 10


def test_growth_table_reports_each_stage():
    from benchmarks.scale import growth_table

    runs = [dict(fraction=f, clips=int(100 * f), plan_seconds=1.0, wall_seconds=10 * f, peak_mb=100.0,
                 stages={"features": dict(jobs=2, seconds=4 * f, peak_mb=100.0), "train": dict(jobs=1, seconds=5 * f, peak_mb=90.0)})
            for f in (1, 10)]
    text = "\n".join(growth_table(runs))
    assert "| features (2 jobs), time | 4.0 s | 40.0 s | x10.0 |" in text
    assert "| wall time minus train and embed jobs | 5 s | 50 s | x10.0 |" in text
