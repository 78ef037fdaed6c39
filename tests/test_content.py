"""Content detection and bounded reads (property tests where inputs are open-ended)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetcache import MAX_UPLOAD_BYTES, InvalidImageError
from assetcache.content.sniff import check, describe_unsupported, load_file, sniff

from .conftest import jpeg, png, webp

SIGNATURES = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
}


@given(st.binary(max_size=64))
def test_sniff_never_crashes_and_only_three_signatures_pass(data: bytes) -> None:
    kind = sniff(data)
    if kind is None:
        assert describe_unsupported(data)
        return
    if kind == "image/webp":
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    else:
        assert data.startswith(SIGNATURES[kind])


@given(st.sampled_from(list(SIGNATURES.values())), st.binary(max_size=64))
def test_signature_plus_anything_is_accepted(signature: bytes, rest: bytes) -> None:
    content = check(signature + rest)
    assert content.content_type in SIGNATURES
    assert content.size == len(signature) + len(rest)


@given(st.binary(min_size=4, max_size=4), st.binary(max_size=32))
def test_webp_needs_riff_and_webp_markers(size: bytes, rest: bytes) -> None:
    assert sniff(b"RIFF" + size + b"WEBP" + rest) == "image/webp"
    assert sniff(b"RIFX" + size + b"WEBP" + rest) is None


@given(st.binary(max_size=128))
def test_check_raises_only_invalid_image_error(data: bytes) -> None:
    try:
        content = check(data)
    except InvalidImageError as exc:
        assert str(exc)
    else:
        assert content.content_type == sniff(data)


def test_check_hashes_exact_bytes() -> None:
    import hashlib

    data = jpeg("abc")
    assert check(data).sha256 == hashlib.sha256(data).hexdigest()


def test_limit_is_inclusive() -> None:
    padding = b"\0" * (MAX_UPLOAD_BYTES - len(png(b"")))
    assert check(png(padding)).size == MAX_UPLOAD_BYTES
    with pytest.raises(InvalidImageError, match="limit"):
        check(png(padding + b"\0"))


def test_never_reads_more_than_limit_plus_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.write(png(b""))
        f.truncate(MAX_UPLOAD_BYTES * 3)
    read_total = 0
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        nonlocal read_total
        chunk = real_read(fd, n)
        read_total += len(chunk)
        return chunk

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(InvalidImageError, match="limit"):
        load_file(big)
    assert read_total == MAX_UPLOAD_BYTES + 1


def test_hostile_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        load_file(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="directory"):
        load_file(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidImageError, match="no such file"):
        load_file(tmp_path / "dangling")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidImageError, match="FIFO"):
        load_file(fifo)  # must not block waiting for a writer
    with pytest.raises(InvalidImageError, match="device"):
        load_file("/dev/zero")  # must not read without bound
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(InvalidImageError, match="no such device|socket|cannot open"):
            load_file(sock_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(png())

    # Tests run as root in CI, where chmod 0 does not stop reads: simulate the refusal.
    def deny(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InvalidImageError, match="permission denied"):
        load_file(path)


def test_odd_file_names(tmp_path: Path) -> None:
    spaced = tmp_path / "with space é.png"
    spaced.write_bytes(webp())
    assert load_file(spaced)[0].content_type == "image/webp"
    raw = os.fsencode(tmp_path) + b"/bad-\xff\xfe.png"
    with open(raw, "wb") as f:
        f.write(png())
    assert load_file(raw)[0].content_type == "image/png"
    with pytest.raises(InvalidImageError) as info:
        load_file(os.fsencode(tmp_path) + b"/gone-\xff.png")
    assert "\\xff" in str(info.value)
