"""A render farm in miniature, for the farm tests and the benchmarks: real processes over
simulated machines, all asking one shared ledger for the same images at once.

A "machine" is a HOME and an XDG_CACHE_HOME of its own (so its own stat cache, mirror, spool
and local locks), holding its own copy of the same images (the same bytes, at its own paths).
Every process runs the CLI, ``assetcache upload --jobs J --json`` on all the images, with
``ASSETCACHE_DB`` the shared ledger's URL and the emulator as useapi.net; they are started all
at once (as a farm's scheduler would), or ``stagger`` seconds apart::

    with Emulator(latency=0.3) as emu:
        result = run_farm(url, emu, tmp_path, FarmSpec(processes=100, machines=5),
                          watch=SessionWatch(server.url, database="farm", user="farm"))
    assert result.failed == [] and result.uploads == 20, result.summary()

``SessionWatch`` polls ``pg_stat_activity`` on the server from an administrator's session, for
the peak number of client sessions of the farm's database and role (and of all clients); its
own session is not counted. With a ``PgBouncer`` it also polls the pooler's SHOW POOLS, for the
peak number of clients the pooler held.

Timing: ``seconds`` per process is its wall time from spawn to exit (Python's start and
imports included), measured from outside; the CLI prints no per-file timing.

This module needs neither pytest nor, until a watch starts, psycopg.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assetcache import Emulator

    from .postgres_server import PgBouncer

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "farm@example.com"
PNG = b"\x89PNG\r\n\x1a\n"
#: What PostgreSQL says when a client finds no free connection slot (SQLSTATE 53300).
TOO_MANY = re.compile(r"too many clients already|remaining connection slots are reserved")


@dataclass(frozen=True)
class FarmSpec:
    processes: int = 100
    machines: int = 5
    images: int = 20
    jobs: int = 4
    email: str = EMAIL
    #: Seconds between two starts (0: all at once, the realistic farm).
    stagger: float = 0.0
    #: The whole farm's budget: processes still running then are killed and count as failed.
    timeout: float = 300.0
    #: The farm's processes run at this niceness. A real farm's machines do not share CPUs
    #: with the database server and the pooler; here, on one small machine, 100 starting
    #: Pythons would otherwise starve both (PgBouncer is one single-threaded process), and the
    #: test would measure this machine's scheduler rather than the ledger.
    nice: int = 10


def farm_image(index: int, size: int = 4096) -> bytes:
    """The ``index``-th image: the same bytes on every machine (PNG by its signature)."""
    return PNG + random.Random(f"farm-{index}").randbytes(size - len(PNG))


def write_images(folder: Path, count: int) -> list[Path]:
    """This machine's copy of the images, aged past the racy-clean window (the stat cache
    then trusts them, as it would files written a while ago)."""
    folder.mkdir(parents=True, exist_ok=True)
    old = time.time_ns() - 60 * 10**9
    paths = []
    for i in range(count):
        path = folder / f"frame{i:02}.png"
        path.write_bytes(farm_image(i))
        os.utime(path, ns=(old, old))
        paths.append(path)
    return paths


@dataclass
class ProcessResult:
    machine: int
    index: int
    returncode: int | None  # None: killed at the farm's timeout
    stdout: str
    stderr: str
    seconds: float
    #: image name -> the ref this process printed for it
    refs: dict[str, str] = field(default_factory=dict)
    #: image name -> the error this process printed for it
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """One line: how it ended and its first error."""
        how = "killed at the timeout" if self.returncode is None else f"exit {self.returncode}"
        said = next(iter(self.errors.values()), "") or _last_line(self.stderr)
        return f"machine {self.machine} process {self.index}: {how}: {said}"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def parse_upload_json(stdout: str) -> tuple[dict[str, str], dict[str, str]]:
    """``upload --json`` lines -> (refs, errors), each keyed by the image's file name."""
    refs: dict[str, str] = {}
    errors: dict[str, str] = {}
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        name = Path(item.get("path", "?")).name
        if "asset_ref" in item:
            refs[name] = item["asset_ref"]
        else:
            errors[name] = str(item.get("error", item))
    return refs, errors


@dataclass
class Peaks:
    """What a SessionWatch saw."""

    sessions: int = 0  # client sessions of the farm's database and role
    all_clients: int = 0  # client sessions of anyone (but the watch's own)
    pooler_clients: int = 0  # clients the pooler held at once (active + waiting)
    samples: int = 0
    errors: list[str] = field(default_factory=list)


class SessionWatch:
    """Polls the server's pg_stat_activity (and a PgBouncer's SHOW POOLS) in a thread.

    ``admin_url`` should be a superuser's, so that its session is never refused: it may use
    the slots PostgreSQL reserves for superusers (``superuser_reserved_connections``). It is
    connected before the farm starts, and PostgreSQL counts slots rather than assigning them,
    so it takes one slot the farm's ordinary role could have had: on a server with
    max_connections=20 (3 reserved) the farm gets 16, one fewer than it would unwatched.
    """

    def __init__(
        self,
        admin_url: str,
        *,
        database: str,
        user: str,
        bouncer: PgBouncer | None = None,
        interval: float = 0.02,
    ) -> None:
        self.admin_url = admin_url
        self.database = database
        self.user = user
        self.bouncer = bouncer
        self.interval = interval
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def limit(self) -> tuple[int, int]:
        """(max_connections, superuser_reserved_connections) of the server."""
        row = (
            self._connection()
            .execute(
                "SELECT current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
            )
            .fetchone()
        )
        return int(row[0]), int(row[1])

    def _connection(self) -> Any:
        if self._conn is None:
            import psycopg

            self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)
        return self._conn

    def __enter__(self) -> SessionWatch:
        self._connection()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="farm-session-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        query = (
            "SELECT count(*) FILTER (WHERE datname = %s AND usename = %s), count(*)"
            " FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        conn = self._connection()
        while not self._stop.is_set():
            try:
                ours, everyone = conn.execute(query, (self.database, self.user)).fetchone()
                self.peaks.sessions = max(self.peaks.sessions, int(ours))
                self.peaks.all_clients = max(self.peaks.all_clients, int(everyone))
                if self.bouncer is not None:
                    held = sum(
                        int(pool["cl_active"]) + int(pool["cl_waiting"])
                        for pool in self.bouncer.show("POOLS")
                        if pool["database"] == self.database
                    )
                    self.peaks.pooler_clients = max(self.peaks.pooler_clients, held)
                self.peaks.samples += 1
            except Exception as exc:  # a watch must not end the farm; it reports instead
                if len(self.peaks.errors) < 5:
                    self.peaks.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)


@dataclass
class FarmResult:
    spec: FarmSpec
    processes: list[ProcessResult]
    uploads: int  # uploads the emulator received during the farm
    seconds: float  # from the first spawn to the last exit
    #: CPU time (user + system) the farm's processes used, all together: what the farm costs
    #: a machine whose cores it has to itself, whatever else was running at the time
    cpu_seconds: float = 0.0
    peaks: Peaks = field(default_factory=Peaks)
    #: connections the server refused for lack of slots (from its log, when given)
    refused: int | None = None
    #: (max_connections, superuser_reserved_connections), when watched
    limit: tuple[int, int] | None = None

    @property
    def failed(self) -> list[ProcessResult]:
        return [p for p in self.processes if not p.ok]

    @property
    def answers(self) -> Counter[tuple[tuple[str, str], ...]]:
        """How many processes printed each distinct set of (image, ref): one set when every
        process got the same refs."""
        return Counter(tuple(sorted(p.refs.items())) for p in self.processes)

    @property
    def distinct_refs(self) -> set[str]:
        return {ref for p in self.processes for ref in p.refs.values()}

    def percentile(self, q: float) -> float:
        times = sorted(p.seconds for p in self.processes)
        return times[min(len(times) - 1, int(len(times) * q))] if times else float("nan")

    def summary(self) -> str:
        spec = self.spec
        codes = Counter("timeout" if p.returncode is None else p.returncode for p in self.failed)
        lines = [
            f"{spec.processes} processes on {spec.machines} machines x {spec.images} images "
            f"(upload --jobs {spec.jobs}): {len(self.failed)} failed "
            f"({', '.join(f'{c}: {n}' for c, n in sorted(codes.items(), key=str)) or 'none'}), "
            f"{self.uploads} uploads, {len(self.distinct_refs)} distinct refs, "
            f"{len(self.answers)} distinct answers; per process p50 {self.percentile(0.5):.1f} s,"
            f" p99 {self.percentile(0.99):.1f} s; {self.seconds:.1f} s in all,"
            f" {self.cpu_seconds:.0f} s of CPU",
        ]
        if self.limit is not None or self.peaks.samples:
            limit = ""
            if self.limit is not None:
                most, reserved = self.limit
                limit = f" (max_connections {most}, {reserved} reserved for superusers)"
            lines.append(
                f"peak client sessions on the server: {self.peaks.sessions} of the farm, "
                f"{self.peaks.all_clients} in all{limit}; {self.peaks.samples} samples"
                + (f"; pooler clients at once: {self.peaks.pooler_clients}"
                   if self.peaks.pooler_clients else "")
                + (f"; watch errors: {self.peaks.errors}" if self.peaks.errors else "")
            )  # fmt: skip
        if self.refused is not None:
            lines.append(f"connections refused for lack of slots (server log): {self.refused}")
        errors = Counter(_shape(p.why().split(": ", 1)[1]) for p in self.failed)
        for said, count in errors.most_common(5):
            lines.append(f"  {count} x {said}")
        return "\n".join(lines)


def _shape(message: str) -> str:
    """An error message without what differs between processes (ports, pids, paths)."""
    message = re.sub(r"\b\d{4,}\b", "N", message)
    return re.sub(r"(?<![\w:/])/[^\s:;,)]+", "PATH", message)[:300]


def farm_env(
    url: str, emulator: Emulator, home: Path, email: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """One machine's environment: its own HOME and caches, the shared ledger, the emulator."""
    env = dict(base if base is not None else os.environ)
    for name in list(env):
        if name.startswith(("ASSETCACHE_", "USEAPI_")):
            del env[name]
    if base is None:
        env["PYTHONPATH"] = str(ROOT)  # this checkout's assetcache, not an installed one
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        ASSETCACHE_DB=url,
        ASSETCACHE_EMAIL=email,
        USEAPI_TOKEN=emulator.token,
        ASSETCACHE_BASE_URL=emulator.base_url,
    )
    return env


def run_farm(
    url: str,
    emulator: Emulator,
    root: Path,
    spec: FarmSpec = FarmSpec(),
    *,
    command: list[str] | None = None,
    base_env: dict[str, str] | None = None,
    watch: SessionWatch | None = None,
    server_log: Path | None = None,
) -> FarmResult:
    """Run the farm against the ledger at ``url``; see the module's docstring.

    ``command`` is the CLI to run (default: this interpreter's ``-m assetcache`` on this
    checkout); ``base_env`` the environment to start from (default: ours, with PYTHONPATH set
    to this checkout). ``server_log``: the server's log, to count refused connections in.
    """
    command = command or [sys.executable, "-m", "assetcache"]
    machines = []
    for m in range(spec.machines):
        home = root / f"machine{m}"
        paths = write_images(home / "frames", spec.images)
        env = farm_env(url, emulator, home, spec.email, base_env)
        machines.append((env, [str(p) for p in paths]))
    log_start = server_log.stat().st_size if server_log is not None else 0
    uploads_before = len(emulator.uploads)
    limit = watch.limit() if watch is not None else None
    procs: list[tuple[int, int, subprocess.Popen[str], float]] = []
    ended: dict[int, float] = {}
    if watch is not None:
        watch.__enter__()
    cpu_before = _children_cpu()
    began = time.monotonic()
    try:
        for i in range(spec.processes):
            m = i % spec.machines
            env, images = machines[m]
            niced = ["nice", "-n", str(spec.nice)] if spec.nice else []
            proc = subprocess.Popen(
                [*niced, *command, "upload", "--jobs", str(spec.jobs), "--json", *images],
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((m, i, proc, time.monotonic()))
            if spec.stagger:
                time.sleep(spec.stagger)
        # Read every pipe as it fills (a full pipe would stall its writer), then reap.
        outputs = _collect(procs, began + spec.timeout, ended)
    finally:
        for _, _, proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if watch is not None:
            watch.__exit__(None, None, None)
    seconds = max(ended.values(), default=time.monotonic()) - began
    cpu_seconds = _children_cpu() - cpu_before
    results = []
    for (m, i, proc, started), (out, err) in zip(procs, outputs, strict=True):
        refs, errors = parse_upload_json(out)
        returncode = proc.returncode if i in ended else None
        results.append(
            ProcessResult(m, i, returncode, out, err, ended.get(i, time.monotonic()) - started,
                          refs, errors)
        )  # fmt: skip
    refused = None
    if server_log is not None:
        with server_log.open("rb") as log:
            log.seek(log_start)
            refused = len(TOO_MANY.findall(log.read().decode(errors="replace")))
    return FarmResult(
        spec=spec,
        processes=results,
        uploads=len(emulator.uploads) - uploads_before,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peaks=watch.peaks if watch is not None else Peaks(),
        refused=refused,
        limit=limit,
    )


def _children_cpu() -> float:
    """CPU seconds of every child this process has reaped (the farm's, as they end)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _collect(
    procs: list[tuple[int, int, subprocess.Popen[str], float]],
    deadline: float,
    ended: dict[int, float],
) -> list[tuple[str, str]]:
    """Every process's (stdout, stderr), read by threads; ``ended`` gets each exit time.
    Processes still running at ``deadline`` are killed (and get no entry in ``ended``)."""
    outputs: list[tuple[str, str]] = [("", "")] * len(procs)

    def reap(slot: int, index: int, proc: subprocess.Popen[str]) -> None:
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            outputs[slot] = (out, err + "\n(killed at the farm's timeout)")
            return
        ended[index] = time.monotonic()
        outputs[slot] = (out, err)

    threads = [
        threading.Thread(target=reap, args=(slot, index, proc), daemon=True)
        for slot, (_, index, proc, _) in enumerate(procs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outputs
