"""The GPU benchmark's code path, run on the CPU at a tiny size (CI has no GPU)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run_agrees_with_the_cpu_path():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["case"] for r in report["surfaces"]] == ["digits-mlp", "resnet-bn"]
    for row in report["surfaces"]:
        assert row["grid"] == 5 and row["device_points_per_s"] > 0
        assert row["max_rel_diff_vs_cpu"] < 1e-5
    hess = report["hessian_top5"]
    assert len(hess["device"]["eigenvalues"]) == 5 and hess["max_rel_diff"] < 1e-4
