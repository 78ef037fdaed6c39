"""A resolver process for the concurrency tests: ``python tests/worker.py DB BASE_URL EMAIL
SEED FILE...`` resolves the files in an order shuffled by SEED and prints one JSON line per
file. The token comes from USEAPI_TOKEN, as in real use. An optional START env var (a
time.time() value) makes many workers begin at the same moment; LOCK_WAIT_S, when set,
shortens how long a resolver waits for another's upload (_locks.LOCK_WAIT_S)."""

from __future__ import annotations

import json
import os
import random
import sys
import time

from assetcache import AssetCache, AssetCacheError, RetryPolicy
from assetcache.ledger import locks as _locks


def main() -> int:
    db, base_url, email, seed, *files = sys.argv[1:]
    random.Random(int(seed)).shuffle(files)
    policy = RetryPolicy(attempts=8, max_elapsed=60, initial=0.05, max_backoff=0.5, jitter=0.05)
    if os.environ.get("LOCK_WAIT_S"):
        _locks.LOCK_WAIT_S = float(os.environ["LOCK_WAIT_S"])
    start = float(os.environ.get("START", "0"))
    if start:
        time.sleep(max(0.0, start - time.time()))
    errors = 0
    with AssetCache(db=db, base_url=base_url, retry=policy) as cache:
        for path in files:
            began = time.perf_counter()
            try:
                asset = cache.resolve(path, email=email)
            except AssetCacheError as exc:
                errors += 1
                print(json.dumps({"path": path, "error": f"{type(exc).__name__}: {exc}"}))
                continue
            print(
                json.dumps(
                    {
                        "path": path,
                        "ref": asset.asset_ref,
                        "reused": asset.reused,
                        "seconds": time.perf_counter() - began,
                    }
                ),
                flush=True,
            )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
