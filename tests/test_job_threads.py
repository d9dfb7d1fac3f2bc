"""A job of the page panel computes with its tab's threads in NumPy's and SciPy's BLAS too,
not only in torch: OpenBLAS keeps one process-wide pool, and two BLAS threads beside a busy
server on two cores made Lanczos several times slower. Checked in a fresh interpreter, where
(as in the server) only job threads set the BLAS thread count."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, threading
import numpy
from threadpoolctl import threadpool_info
from ui.jobs import blas_limited

def blas():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

out = {"start": blas()}
def job(threads, key):
    def work(x, progress=None):
        out[key] = blas()
        return x + 1
    t = threading.Thread(target=lambda: out.setdefault(key + " returned",
                                                       blas_limited(work, threads)(41)))
    t.start()
    t.join()

job(1, "one"); job(2, "two"); job(1, "one again")
def boom():
    raise ValueError("no")
try:
    blas_limited(boom, 1)()
except ValueError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def test_each_job_sets_blas_to_its_threads():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["start"]  # NumPy's OpenBLAS is loaded
    assert set(out["one"]) == {1} and set(out["one again"]) == {1}
    assert set(out["two"]) == {2}
    assert out["one returned"] == out["two returned"] == 42  # arguments and result pass through
    assert out["error"] == "no"  # and errors
