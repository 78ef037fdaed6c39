"""Only the documented answer, for the account asked for, is recorded; everything a server says
reaches an error message short, escaped and without the token; answers are read boundedly."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from assetcache import AssetCache, InvalidImageError, ProtocolError, ServerError
from assetcache._client import MAX_ANSWER_BYTES, AsyncLumaClient, LumaClient, UploadResult
from assetcache._refs import MAX_REF_LENGTH, excerpt, named_email, ref_problem, text_problem

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png

UUID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
REF = f"u12345-email:{EMAIL}-image:{UUID}"


def answer(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "assetRef": REF,
        "email": EMAIL,
        "upload": {"id": UUID, "media": {"url": "https://storage.cdn-luma.com/uploads/x.png"}},
    }
    body.update(changes)
    return body


def served(body: object) -> FakeLuma:
    return FakeLuma(script=[(200, {}, json.dumps(body).encode())])


def assert_safe_message(error: BaseException) -> None:
    """Short, one line, nothing unprintable (no escape sequence reaches a terminal)."""
    text = str(error)
    assert len(text) < 500, text
    assert text.isprintable(), repr(text)


def sync_client(transport: httpx.BaseTransport) -> LumaClient:
    return LumaClient(
        token=TOKEN,
        base_url="https://api.test",
        transport=transport,
        retry=FAST_RETRY,
        sleep=lambda s: None,
    )


def upload(transport: httpx.BaseTransport) -> UploadResult:
    client = sync_client(transport)
    try:
        return client.upload(png(), content_type="image/png", email=EMAIL)
    finally:
        client.close()


def upload_async(transport: httpx.AsyncBaseTransport) -> UploadResult:
    async def go() -> UploadResult:
        client = AsyncLumaClient(
            token=TOKEN, base_url="https://api.test", transport=transport, retry=FAST_RETRY
        )
        try:
            return await client.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            await client.aclose()

    return asyncio.run(go())


# -- assetRef -------------------------------------------------------------------------------

HOSTILE_REFS = {
    "newline": REF + "\n",
    "crlf inside": REF[:10] + "\r\n" + REF[10:],
    "terminal escape": REF + "\x1b[2J\x1b[31m",
    "nul": REF + "\x00",
    "delete": REF + "\x7f",
    "c1 control": REF + "\x9b31m",
    "bidi override": "\u202e" + REF,
    "zero width space": REF[:5] + "\u200b" + REF[5:],
    "lone surrogate": REF + "\ud800",
    "private use": REF + "\ue000",
    "unassigned": REF + "\U000e0080",
    "leading space": " " + REF,
    "trailing space": REF + " ",
    "inner space": REF.replace("-image:", " -image:"),
    "tab": REF + "\t",
    "no-break space": REF + "\u00a0",
    "line separator": REF + "\u2028",
    "longer than the limit": REF + "x" * MAX_REF_LENGTH,
    "megabytes": REF + "x" * 3_000_000,
    "empty": "",
    "a number": 12345,
    "a list": [REF],
    "an object": {"ref": REF},
    "null": None,
}


@pytest.mark.parametrize("ref", HOSTILE_REFS.values(), ids=HOSTILE_REFS.keys())
def test_a_ref_that_is_not_one_printable_bounded_word_is_refused_and_nothing_recorded(
    ref: object, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    luma.script = [(200, {}, json.dumps(answer(assetRef=ref)).encode())]
    cache = make_cache()
    with pytest.raises(ProtocolError, match="nothing was recorded") as info:
        cache.resolve(png(), email=EMAIL)
    assert_safe_message(info.value)
    assert len(luma.requests) == 1  # not retried: the image may have been uploaded
    assert cache.assets() == []


@pytest.mark.parametrize(
    "ref",
    [
        "u12345-email:other@example.com-image:" + UUID,
        "u12345-email:other@example.com:" + UUID,
        "u12345-email:Me@example.com-image:" + UUID,  # the local part is case-sensitive
        "u12345-email:me@example.com.evil.test-image:" + UUID,
        "u12345-email:me@example.co-image:" + UUID,
        "u12345-email:-image:" + UUID,
        "u12345-email:" + UUID,
    ],
)
def test_a_ref_naming_another_account_is_refused(
    ref: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    luma.script = [(200, {}, json.dumps(answer(assetRef=ref)).encode())]
    cache = make_cache()
    with pytest.raises(ProtocolError, match="names another account") as info:
        cache.resolve(png(), email=EMAIL)
    assert_safe_message(info.value)
    assert cache.assets() == []


@pytest.mark.parametrize(
    "ref",
    [
        REF,
        f"u12345-email:{EMAIL}:{UUID}",  # the published example's shape
        f"u12345-email:me@EXAMPLE.com-image:{UUID}",  # domains are case-insensitive
        f"u12345-email:{EMAIL}",
        "an-opaque-ref-naming-no-account",
        "x" * MAX_REF_LENGTH,
    ],
)
def test_refs_of_this_account_in_any_shape_are_recorded_verbatim(
    ref: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    luma.script = [(200, {}, json.dumps(answer(assetRef=ref)).encode())]
    cache = make_cache()
    assert cache.resolve(png(), email=EMAIL).asset_ref == ref
    assert [asset.asset_ref for asset in cache.assets()] == [ref]


def test_ref_problem_rules() -> None:
    assert ref_problem(REF, EMAIL) is None
    assert ref_problem(f"u1-email:{EMAIL}:{UUID}", EMAIL) is None
    assert ref_problem("opaque", EMAIL) is None
    # The account email as given is normalised (domain lower-cased), the ref's may not be.
    assert ref_problem("u1-email:Me@Example.COM-image:x", "Me@example.com") is None
    assert ref_problem("u1-email:me@example.com-image:x", "Me@example.com") is not None
    assert ref_problem(None, EMAIL) == "is missing"
    assert ref_problem("", EMAIL) == "is empty"
    assert ref_problem(5, EMAIL) == "is a int, not a string"
    assert ref_problem("x" * (MAX_REF_LENGTH + 1), EMAIL) == (
        f"is longer than {MAX_REF_LENGTH} characters"
    )
    assert ref_problem("a b", EMAIL) == "contains spaces"
    assert "control" in (ref_problem("a\x1bb", EMAIL) or "")
    assert ref_problem("u1-email:x@y.z:1", EMAIL) == "names another account ('x@y.z')"
    # The longest documented ref fits: 20-digit user id, 254-character email, a UUID.
    longest_email = "a" * 64 + "@" + "b" * 189
    assert len(longest_email) == 254
    longest = f"u{'9' * 20}-email:{longest_email}-image:{UUID}"
    assert ref_problem(longest, longest_email) is None


def test_named_email_reads_both_documented_shapes() -> None:
    assert named_email(REF) == EMAIL
    assert named_email(f"u1-email:{EMAIL}:{UUID}") == EMAIL
    assert named_email(f"u1-email:{EMAIL}") == EMAIL
    assert named_email("no account here") is None


def test_text_problem_and_excerpt_never_let_a_control_character_through() -> None:
    assert text_problem("ok", 2) is None
    assert text_problem("ok!", 2) == "is longer than 2 characters"
    assert excerpt("\x1b[2J" + "x" * 100) == repr("\x1b[2J" + "x" * 36) + "…"
    assert excerpt("\u202e\ud800").isprintable()


# -- email, upload.id, upload.media.url -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (answer(email=None), "email is missing"),
        ({k: v for k, v in answer().items() if k != "email"}, "email is missing"),
        (answer(email="other@example.com"), "email names another account"),
        (answer(email="Me@example.com"), "email names another account"),
        (answer(email=["me@example.com"]), "email is a list"),
        (answer(email="not an email"), "email is not an email address"),
        (answer(upload={"id": "", "media": {"url": "https://cdn/x"}}), "upload.id is empty"),
        (answer(upload={"id": "a\x1b[0m", "media": {"url": "https://cdn/x"}}), "upload.id"),
        (answer(upload={"id": "a" * 257, "media": {"url": "https://cdn/x"}}), "upload.id"),
        (answer(upload={"id": 7, "media": {"url": "https://cdn/x"}}), "upload.id"),
        (answer(upload={"id": UUID, "media": {"url": "javascript:alert(1)"}}), "http(s) URL"),
        (answer(upload={"id": UUID, "media": {"url": "ftp://cdn/x"}}), "http(s) URL"),
        (answer(upload={"id": UUID, "media": {"url": "https://"}}), "http(s) URL"),
        (answer(upload={"id": UUID, "media": {"url": "/uploads/x.png"}}), "http(s) URL"),
        (answer(upload={"id": UUID, "media": {"url": "https://cdn/x\n"}}), "media.url"),
        (answer(upload={"id": UUID, "media": {"url": "https://c/" + "x" * 3000}}), "media.url"),
    ],
)
def test_every_field_of_a_200_is_checked(
    body: dict[str, object], words: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    luma.script = [(200, {}, json.dumps(body).encode())]
    cache = make_cache()
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        cache.resolve(png(), email=EMAIL)
    assert "nothing was recorded" in str(info.value)
    assert_safe_message(info.value)
    assert cache.assets() == []


def test_the_answered_email_may_differ_only_as_normalisation_allows() -> None:
    result = upload(served(answer(email="me@EXAMPLE.com")).transport)
    assert result.email == EMAIL
    assert result.asset_ref == REF


def test_a_200_quoting_the_token_is_refused_without_showing_it() -> None:
    for body in (
        answer(assetRef=f"u1-email:{EMAIL}-image:{TOKEN}"),
        answer(upload={"id": TOKEN, "media": {"url": "https://cdn/x"}}),
        answer(upload={"id": UUID, "media": {"url": f"https://cdn/{TOKEN}"}}),
    ):
        with pytest.raises(ProtocolError, match="quotes the API token") as info:
            upload(served(body).transport)
        assert TOKEN not in str(info.value)
        assert TOKEN[:8] not in str(info.value)


# -- error bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": "bad \x1b[2J\x1b[31mred\x00 \u202eevil\ud800 \x9b"}).encode(),
        b"<html>\x1b]0;pwned\x07 \x00\xff\xfe</html>",
    ],
)
def test_error_bodies_reach_the_message_escaped(body: bytes) -> None:
    with pytest.raises(InvalidImageError) as info:
        upload(FakeLuma(script=[(400, {}, body)]).transport)
    assert_safe_message(info.value)
    assert "\\x1b" in str(info.value)  # escaped, still readable


def test_an_error_body_of_megabytes_is_cut_short() -> None:
    body = json.dumps({"error": "x" * 5_000_000}).encode()
    with pytest.raises(InvalidImageError) as info:
        upload(FakeLuma(script=[(400, {}, body)]).transport)
    assert_safe_message(info.value)


# -- reading answers boundedly ------------------------------------------------------------------

#: What the endless streams below give at most, should a client read them to the end.
_STREAM_CHUNKS = 16 * 1024
_CHUNK = b" " * 1024


class Endless(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer body that goes on (16 MB here), counting the chunks pulled from it."""

    def __init__(self, head: bytes = b"") -> None:
        self.head = head
        self.pulled = 0

    def _chunks(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(_STREAM_CHUNKS):
            self.pulled += 1
            yield _CHUNK

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk


def endless_transport(
    status: int, stream: Endless, headers: dict[str, str] | None = None
) -> httpx.MockTransport:
    return httpx.MockTransport(lambda r: httpx.Response(status, headers=headers, stream=stream))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_200_larger_than_the_limit_is_refused_after_reading_only_the_limit(mode: str) -> None:
    stream = Endless(b'{"assetRef": "')
    transport = endless_transport(200, stream)
    with pytest.raises(ProtocolError, match="larger than 64 KiB") as info:
        upload(transport) if mode == "sync" else upload_async(transport)
    assert stream.pulled <= MAX_ANSWER_BYTES // len(_CHUNK) + 1
    assert_safe_message(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_endless_error_body_is_cut_at_the_limit(mode: str) -> None:
    stream = Endless(b"overloaded")
    transport = endless_transport(503, stream)
    policy_attempts = FAST_RETRY.attempts
    with pytest.raises(ServerError, match="overloaded") as info:
        upload(transport) if mode == "sync" else upload_async(transport)
    assert stream.pulled <= policy_attempts * (MAX_ANSWER_BYTES // len(_CHUNK) + 1)
    assert_safe_message(info.value)


def test_a_compressed_answer_is_decoded_within_the_limit() -> None:
    bomb = gzip.compress(json.dumps(answer(assetRef=REF + "x" * 20_000_000)).encode())
    assert len(bomb) < MAX_ANSWER_BYTES  # small on the wire, 20 MB once decoded
    headers = {"Content-Encoding": "gzip"}
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers=headers, stream=httpx.ByteStream(bomb))
    )
    with pytest.raises(ProtocolError, match="larger than 64 KiB"):
        upload(transport)
    small = gzip.compress(json.dumps(answer()).encode())
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers=headers, stream=httpx.ByteStream(small))
    )
    assert upload(transport).asset_ref == REF


def test_identity_is_asked_for() -> None:
    luma = served(answer())
    upload(luma.transport)
    assert luma.requests[0].headers["accept-encoding"] == "identity"
