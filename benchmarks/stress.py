"""Stress run: many processes resolving overlapping files against a flaky, slow emulator.

    python benchmarks/stress.py                          # 16 processes x 40 files, 20 % failures
    python benchmarks/stress.py --processes 32 --files 100 --fail-rate 0.3 --latency 100

Each process resolves every file (shuffled) through one AssetCache. Prints processes,
resolves, uploads, errors, and p50/p99 resolve latency, then checks the guarantees: exactly one
upload per file, no errors, and an intact ledger. Exits 1 if any does not hold. Bounded: every
process has a deadline, and all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assetcache import Emulator  # noqa: E402

WORKER = ROOT / "tests" / "worker.py"
EMAIL = "stress@example.com"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--latency", type=float, default=50, help="milliseconds per answer")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="assetcache-stress-") as name:
        tmp = Path(name)
        files = []
        for i in range(args.files):
            path = tmp / f"frame-{i:04}.png"
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(i).randbytes(8192))
            files.append(str(path))
        db = tmp / "ledger.db"
        with Emulator(
            latency=args.latency / 1000, fail_rate=args.fail_rate, seed=1, retry_after=0
        ) as emu:
            env = dict(
                os.environ,
                USEAPI_TOKEN=emu.token,
                PYTHONPATH=str(ROOT),
                START=str(time.time() + 2),
                HOME=str(tmp),
            )
            began = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(db), emu.base_url, EMAIL, str(n), *files],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for n in range(args.processes)
            ]
            records = []
            for proc in procs:
                out, _ = proc.communicate(timeout=args.timeout)
                records += [json.loads(line) for line in out.splitlines()]
            elapsed = time.perf_counter() - began - 2
            uploads, requests, statuses = len(emu.uploads), emu.request_count, emu.status_counts()
        with sqlite3.connect(db) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]

    latencies = sorted(r["seconds"] for r in records if "seconds" in r)
    errors = [r for r in records if "error" in r]
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"processes      {args.processes}")
    print(f"resolves       {len(records)}  ({args.processes} x {args.files} files)")
    print(f"uploads        {uploads}  (distinct files: {args.files})")
    print(f"requests       {requests}  {dict(sorted(statuses.items()))}")
    print(f"errors         {len(errors)}")
    print(f"latency        p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"wall time      {elapsed:.1f} s")
    print(f"integrity      {integrity}")
    for error in errors[:5]:
        print(f"  error: {error['error']}")
    ok = uploads == args.files and not errors and integrity == "ok"
    print("guarantees     " + ("hold" if ok else "VIOLATED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
