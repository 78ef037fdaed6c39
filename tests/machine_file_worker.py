"""One process of a render farm's machine whose shared ledger refuses connections, for
tests/test_machine_file_under_many_processes.py:

``python tests/machine_file_worker.py URL FOLDER ID DIE_AFTER SHARED_FILE...``

It writes five images of its own into FOLDER (new paths, so their stat-cache rows are new
writes to the machine file), then resolves them and the shared files with 4 threads through
one cache on URL, printing one JSON line per file: ``{"path", "error"}`` (every resolve fails:
the server refuses) or ``{"path", "ref"}``. With DIE_AFTER >= 0 it SIGKILLs itself once that
many files are answered, while its other threads are mid-resolve; otherwise it closes the cache
and prints ``{"done": [its own files]}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from assetcache import AssetCache, AssetCacheError
from assetcache._demo import sample_png


def main() -> int:
    url, folder, ident, die_after_arg, *shared = sys.argv[1:]
    die_after = int(die_after_arg)
    own = []
    for n in range(5):
        path = os.path.join(folder, f"own-{ident}-{n}.png")
        with open(path, "wb") as f:
            f.write(sample_png(4 + n, 4, (int(ident) % 256, n, 7)))
        own.append(path)
    answered = 0
    guard = threading.Lock()
    cache = AssetCache(db=url)

    def resolve(path: str) -> None:
        nonlocal answered
        try:
            line = {"path": path, "ref": cache.resolve(path, email="me@example.com").asset_ref}
        except AssetCacheError as exc:
            line = {"path": path, "error": f"{type(exc).__name__}: {exc}"}
        with guard:
            print(json.dumps(line), flush=True)
            answered += 1
            if answered == die_after:
                os.kill(os.getpid(), signal.SIGKILL)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(resolve, own + shared))
    cache.close()
    print(json.dumps({"done": own}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
