"""A lecture hall on one server: N browser sessions open the Loss surface page at once.

    python benchmarks/load.py --sessions 8 [--distinct] [--json]

Starts ``streamlit run app.py`` on 127.0.0.1 (a fresh preset cache), warms it up with one
page view that is not counted, times one session alone (``single_s``), then opens N sessions
at once (N Playwright browser contexts in Debian's Chromium, like N students) that each open
the Loss surface page with default settings and wait for its figure (the finished contour and
its metrics). All N ask the same thing (the lecture case); ``--distinct`` gives each a seed of
its own, so nothing can be shared. The single and the N sessions use seeds the warm-up did not,
so neither is answered from the cache of an earlier phase.

Prints one JSON line: ``sessions``, ``completed``, ``errors``, ``median_s``, ``max_s``,
``single_s``, ``ratio`` (median / single), ``peak_rss_mb`` (the server's peak resident memory),
``peak_workers_mb`` (its worker processes at their peak, summed), then, once every tab has
closed: ``leftover_jobs`` (jobs queued or running in the server), ``leftover_workers`` (job
threads still alive) and ``pool_processes`` (the idle worker pool the server keeps for the next
surface, by design). Loopback only; N is capped at 32 and every wait has a deadline.

The N browsers run on the same machine as the server, so on a small machine they compete with
it and with each other. Two more readings separate the server's share from the browsers':
``server_cpu_s``, the server process's CPU seconds during the N sessions, and the floor of the
browsers alone, N sessions opening the Home page (no figure, no computation) at once:
``bare_single_s`` (one alone), ``bare_median_s`` and ``bare_ratio``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LANDSCAPE_CHROMIUM", "/usr/bin/chromium")
MAX_SESSIONS = 32
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Server:
    """The app on a free loopback port, its queue counts in a stats file, its memory sampled."""

    def __init__(self, cpus: set[int] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp = Path(tempfile.mkdtemp(prefix="landscape-load-"))
        self.stats_file = tmp / "stats.json"
        self.log = open(tmp / "server.log", "w")
        env = dict(os.environ, LANDSCAPE_CACHE=str(tmp / "cache"), LANDSCAPE_STATS_FILE=str(self.stats_file),
                   PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.workers_peak = 0.0
        self._stop = threading.Event()
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            self.close()
            raise RuntimeError(f"the server did not start; see {self.log.name}")
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.is_set():
            self.workers_peak = max(self.workers_peak, sum(rss_mb(c) for c in children(self.proc.pid)))
            time.sleep(0.2)

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def peak_rss_mb(self) -> float:
        return rss_mb(self.proc.pid, "VmHWM")

    def close(self):
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def one_session(browser, url: str, timeout_s: float) -> tuple[float | None, str | None]:
    """Seconds from opening the page to its finished figure, or an error."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = await ctx.new_page()
        t0 = time.perf_counter()
        await page.goto(url, timeout=timeout_s * 1000)
        done = page.get_by_text("Lowest loss on the grid")
        failed = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
        end = t0 + timeout_s
        while time.perf_counter() < end:
            if await failed.count():
                return None, (await failed.first.inner_text())[:200]
            if await done.count() and await page.locator("[data-testid='stPlotlyChart']").count():
                return time.perf_counter() - t0, None
            await asyncio.sleep(0.1)
        return None, f"no figure within {timeout_s:.0f} s"
    except Exception as e:  # a browser or navigation failure counts as an error of this session
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        await ctx.close()


async def bare_session(browser, url: str, timeout_s: float) -> float | None:
    """Seconds from opening the Home page (no figure, no computation) to its title: what the
    browser and Streamlit cost before any page of ours does anything."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = await ctx.new_page()
        t0 = time.perf_counter()
        await page.goto(url, timeout=timeout_s * 1000)
        await page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=timeout_s * 1000)
        return time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a floor that cannot be measured is left out
        return None
    finally:
        await ctx.close()


async def bare_wave(server: Server, n: int, timeout_s: float) -> list[float | None]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            return await asyncio.gather(*[bare_session(browser, server.url, timeout_s) for _ in range(n)])
        finally:
            await browser.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def wave(server: Server, seeds: list[int], timeout_s: float) -> list[tuple[float | None, str | None]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            return await asyncio.gather(*[one_session(browser, f"{server.url}/surface?seed={s}", timeout_s)
                                          for s in seeds])
        finally:
            await browser.close()


def leftovers(server: Server, wait_s: float = 20.0) -> dict:
    """The server's counts once every tab has gone (waiting up to ``wait_s`` for it to notice)."""
    end = time.perf_counter() + wait_s
    while True:
        s = server.stats()
        busy = s.get("live_jobs", 0) + s.get("queued", 0) + s.get("running", 0) + s.get("job_threads", 0)
        if (s and busy == 0) or time.perf_counter() > end:
            return s
        time.sleep(0.5)


def run(n: int, distinct: bool, timeout_s: float, cpus: set[int] | None = None) -> dict:
    server = Server(cpus)
    try:
        asyncio.run(wave(server, [900], timeout_s * 2))  # warm-up: imports, preset training; not counted
        (single, err), = asyncio.run(wave(server, [901], timeout_s))
        if err:
            raise RuntimeError(f"the single session failed: {err}")
        seeds = [1000 + i for i in range(n)] if distinct else [1000] * n
        cpu0 = cpu_seconds(server.proc.pid)
        results = asyncio.run(wave(server, seeds, timeout_s))
        server_cpu = cpu_seconds(server.proc.pid) - cpu0
        bare_one = [t for t in asyncio.run(bare_wave(server, 1, timeout_s)) if t is not None]
        bare_n = [t for t in asyncio.run(bare_wave(server, n, timeout_s)) if t is not None]
        times = [t for t, _ in results if t is not None]
        errors = [e for _, e in results if e is not None]
        left = leftovers(server)
        median = statistics.median(times) if times else None
        return {"sessions": n, "distinct": distinct, "completed": len(times), "errors": len(errors),
                "error_messages": errors[:3], "median_s": round(median, 2) if median else None,
                "max_s": round(max(times), 2) if times else None, "single_s": round(single, 2),
                "ratio": round(median / single, 2) if median else None,
                "peak_rss_mb": round(server.peak_rss_mb()), "peak_workers_mb": round(server.workers_peak),
                "leftover_jobs": left.get("live_jobs", -1) + left.get("queued", 0),
                "leftover_workers": left.get("job_threads", -1),
                "pool_processes": len(children(server.proc.pid)), "slots": left.get("slots"),
                "cache_entries": left.get("cache_entries"), "cache_mb": left.get("cache_mb"),
                "server_cpu_s": round(server_cpu, 2),
                "bare_single_s": round(bare_one[0], 2) if bare_one else None,
                "bare_median_s": round(statistics.median(bare_n), 2) if bare_n else None,
                "bare_ratio": (round(statistics.median(bare_n) / bare_one[0], 2)
                               if bare_n and bare_one else None)}
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4, help=f"browser sessions at once (1 to {MAX_SESSIONS})")
    ap.add_argument("--distinct", action="store_true", help="a different seed per session (nothing shared)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds a session may wait for its figure")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--server-cpus", help="pin the server to these cores, e.g. 0,1 (the browsers use the rest)")
    args = ap.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS:
        ap.error(f"--sessions must be between 1 and {MAX_SESSIONS}, got {args.sessions}")
    try:
        cpus = {int(c) for c in args.server_cpus.split(",")} if args.server_cpus else None
    except ValueError:
        ap.error(f"--server-cpus must be core numbers separated by commas, got {args.server_cpus!r}")
    report = run(args.sessions, args.distinct, args.timeout, cpus)
    report["server_cpus"] = sorted(cpus) if cpus else None
    if not args.json:
        print(f"{report['completed']}/{report['sessions']} sessions, median {report['median_s']} s "
              f"(single {report['single_s']} s, {report['ratio']}x), peak {report['peak_rss_mb']} MB",
              file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
