import json
import subprocess
import sys

from conftest import REPO


def test_benchmark_smoke_run_prints_the_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path / "b")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "of matmul peak" in out.stdout and "vs per-clip loop" in out.stdout
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["matmul_peak_gflops"] > 0 and results["embed_speedup"] > 0
    assert (tmp_path / "b.md").read_text().count("\n|") >= 10
