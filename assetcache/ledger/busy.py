"""``KeyBusy``: what an impatient hold raises instead of waiting (see ``base.KeyLock``).

Its own module, below every lock: both kinds of lock (``locks``, ``leases``) raise it, the
caches catch it, and nothing else is needed to know it.
"""

from __future__ import annotations


class KeyBusy(Exception):
    """Raised by ``KeyLock.hold(..., patient=False)`` instead of waiting: another holder has
    the key right now. Not an AssetCacheError: it never leaves the cache, whose batches take
    the key up again once their other work is done (``_orchestration.BatchOrder``)."""
