"""A local stand-in for the useapi.net Luma "upload assets" endpoint.

``Emulator`` serves ``POST /v1/luma/assets/{email}`` over real HTTP on loopback and answers
the way the published contract says the remote does (200 model, 400/401/404/596 errors,
JSON bodies), so that code using assetcache -- ours and our users' -- can be tested without
a useapi.net account, without network access and without spending uploads. It can also
misbehave on purpose (latency, 429/5xx answers, short retention) to exercise retry and expiry
handling deterministically.

Use it in a pytest fixture::

    import pytest
    from assetcache import Emulator

    @pytest.fixture
    def luma():
        with Emulator(accounts=["me@example.com"]) as emulator:
            yield emulator

    def test_upload(luma):
        luma.fail_next(429, retry_after=0)      # the first upload is turned away once
        ...  # point the client at luma.base_url with token luma.token
        assert [u.email for u in luma.uploads] == ["me@example.com"]

The emulator keeps uploaded bytes in memory and serves them back at ``GET /media/{id}``
(the ``upload.media.url`` of the answer) until ``retention`` has passed on ``clock``.
Only the standard library is used, so it runs anywhere assetcache does.
"""

from .server import Emulator
from .state import EmulatedUpload

__all__ = ["EmulatedUpload", "Emulator"]
