"""The Luma upload emulator, exercised over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from assetcache.content.sniff import MAX_UPLOAD_BYTES
from assetcache.emulator import EmulatedUpload, Emulator
from assetcache.emulator.state import SESSION_ERROR_MESSAGE

EMAIL = "user@example.com"
BROKEN = "expired@example.com"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def assets_path(email: str = EMAIL) -> str:
    return f"/v1/luma/assets/{quote(email, safe='')}"


def http_client(**options: Any) -> httpx.Client:
    # Plain HTTP on loopback only: skipping TLS setup (verify=False) saves ~0.1 s per client,
    # and trust_env=False keeps proxy settings of the machine out of the way.
    return httpx.Client(trust_env=False, verify=False, **options)


def open_client(emulator: Emulator, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or emulator.token}"}
    return http_client(base_url=emulator.base_url, headers=headers)


def post(
    client: httpx.Client,
    body: bytes = PNG,
    *,
    email: str = EMAIL,
    content_type: str | None = "image/png",
) -> httpx.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return client.post(assets_path(email), content=body, headers=headers)


def raw_exchange(emulator: Emulator, request: bytes, *, read_after: bytes = b"") -> bytes:
    """Send raw bytes, read the whole answer (the server closes), return it."""
    host, port = emulator.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        if read_after:
            sock.sendall(read_after)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def raw_status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def raw_json(answer: bytes) -> dict[str, object]:
    result: dict[str, object] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return result


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(accounts=[EMAIL, BROKEN], session_errors=[BROKEN]) as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with open_client(emulator) as c:
        yield c


# -- success ------------------------------------------------------------------------------


def test_success_matches_the_documented_model(emulator: Emulator, client: httpx.Client) -> None:
    response = post(client)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    upload_id = body["upload"]["id"]
    assert re.fullmatch(UUID_RE, upload_id)
    assert re.fullmatch(rf"u\d+-email:{re.escape(EMAIL)}-image:{upload_id}", body["assetRef"])
    assert body["email"] == EMAIL
    assert body["upload"]["media"]["url"] == f"{emulator.base_url}/media/{upload_id}"
    assert set(body) == {"assetRef", "email", "upload"}


def test_media_url_serves_the_same_bytes_without_a_token(
    emulator: Emulator, client: httpx.Client
) -> None:
    url = post(client, JPEG, content_type="image/jpeg").json()["upload"]["media"]["url"]

    with http_client() as anonymous:
        media = anonymous.get(url)
        missing = anonymous.get(f"{emulator.base_url}/media/{uuid.uuid4()}")

    assert media.status_code == 200
    assert media.content == JPEG
    assert media.headers["content-type"] == "image/jpeg"
    assert missing.status_code == 404


def test_upload_is_recorded(emulator: Emulator, client: httpx.Client) -> None:
    body = post(client).json()

    [upload] = emulator.uploads
    assert isinstance(upload, EmulatedUpload)
    assert upload.asset_ref == body["assetRef"]
    assert upload.upload_id == body["upload"]["id"]
    assert upload.media_url == body["upload"]["media"]["url"]
    assert (upload.email, upload.content_type, upload.size) == (EMAIL, "image/png", len(PNG))
    assert upload.sha256 == hashlib.sha256(PNG).hexdigest()
    assert upload.received_at.tzinfo is not None


def test_user_number_is_stable_per_email(client: httpx.Client) -> None:
    first, second = (post(client).json()["assetRef"] for _ in range(2))

    assert first.split("-", 1)[0] == second.split("-", 1)[0]
    assert first != second


def test_declared_type_is_trusted_not_the_bytes(emulator: Emulator, client: httpx.Client) -> None:
    assert post(client, PNG, content_type="IMAGE/JPEG; charset=binary").status_code == 200
    assert emulator.uploads[0].content_type == "image/jpeg"


@pytest.mark.parametrize(
    "email",
    [
        "a/b@example.com",
        "what?@example.com",
        "hash#tag@example.com",
        "100%@example.com",
        "plus+tag@example.com",
        "with space@example.com",
        "josé@example.com",
    ],
)
def test_percent_encoded_email_is_decoded(email: str) -> None:
    with Emulator() as emu, open_client(emu) as c:
        response = post(c, email=email)

        assert response.status_code == 200, response.text
        assert response.json()["email"] == email
        assert f"-email:{email}-image:" in response.json()["assetRef"]
        assert emu.uploads[0].email == email


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc", "Bearer"])
def test_bad_or_missing_token_is_401(emulator: Emulator, authorization: str | None) -> None:
    headers = {"Content-Type": "image/png"}
    if authorization is not None:
        headers["Authorization"] = authorization
    with http_client(base_url=emulator.base_url) as anonymous:
        response = anonymous.post(assets_path(), content=PNG, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    assert emulator.uploads == []


def test_auth_is_checked_before_anything_else(emulator: Emulator) -> None:
    with open_client(emulator, token="wrong") as c:
        assert post(c, email="nobody@example.com", content_type="image/bmp").status_code == 401
        assert c.get("/nowhere").status_code == 401


def test_unknown_account_is_404(client: httpx.Client) -> None:
    response = post(client, email="nobody@example.com")

    assert response.status_code == 404
    assert response.json() == {"error": "Unable to find configuration for email nobody@example.com"}


def test_session_error_is_596_with_the_documented_message(client: httpx.Client) -> None:
    response = post(client, email=BROKEN)

    assert response.status_code == 596
    assert response.reason_phrase == "Account Error"
    assert response.json() == {"error": SESSION_ERROR_MESSAGE}
    assert SESSION_ERROR_MESSAGE == (
        "Luma account has an error. Please check your account configuration via "
        "GET /v1/luma/accounts or re-add the account via POST /v1/luma/accounts"
    )


def test_session_error_account_need_not_also_be_listed_as_an_account() -> None:
    # `assetcache emulator --account a --session-error b`: b is configured, its session expired.
    with Emulator(accounts=[EMAIL], session_errors=[BROKEN]) as emu, open_client(emu) as c:
        expired = post(c, email=BROKEN)
        unknown = post(c, email="nobody@example.com")
        fine = post(c, email=EMAIL)

    assert expired.status_code == 596
    assert expired.json() == {"error": SESSION_ERROR_MESSAGE}
    assert unknown.status_code == 404
    assert fine.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "named"),
    [("image/bmp", "image/bmp"), ("Image/GIF; x=y", "image/gif"), (None, "none")],
)
def test_unsupported_content_type_is_400_naming_it(
    client: httpx.Client, content_type: str | None, named: str
) -> None:
    response = post(client, content_type=content_type)

    assert response.status_code == 400
    assert response.json() == {
        "error": f"Content-Type ({named}) not supported. Valid: image/jpeg, image/png, image/webp"
    }


def test_empty_body_is_400(emulator: Emulator, client: httpx.Client) -> None:
    response = post(client, b"")

    assert response.status_code == 400
    assert response.json() == {"error": "Content is empty"}
    assert emulator.uploads == []


def test_body_over_the_limit_is_400(emulator: Emulator, client: httpx.Client) -> None:
    response = post(client, b"\0" * (MAX_UPLOAD_BYTES + 1))

    assert response.status_code == 400
    assert response.json() == {
        "error": f"File size ({MAX_UPLOAD_BYTES + 1} bytes) exceeds maximum of 20 MB"
    }
    assert response.headers["connection"] == "close"
    assert emulator.uploads == []


def test_body_at_the_limit_is_accepted(emulator: Emulator, client: httpx.Client) -> None:
    assert post(client, b"\0" * MAX_UPLOAD_BYTES).status_code == 200
    assert emulator.uploads[0].size == MAX_UPLOAD_BYTES


def test_oversized_content_length_is_answered_without_the_body(emulator: Emulator) -> None:
    conn = http.client.HTTPConnection(emulator.base_url.removeprefix("http://"), timeout=5)
    try:
        conn.putrequest("POST", assets_path())
        conn.putheader("Authorization", f"Bearer {emulator.token}")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(10**12))
        conn.endheaders()  # and no body at all: a server waiting for it would time out
        response = conn.getresponse()

        assert response.status == 400
        assert response.getheader("Connection") == "close"
        assert "exceeds maximum" in json.loads(response.read())["error"]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/", "POST"),
        ("/v1/luma/assets/", "POST"),
        ("/v1/luma/assets", "POST"),
        (f"{assets_path()}/extra", "POST"),
        (f"{assets_path()}/", "POST"),
        ("/v1/luma/videos", "GET"),
        ("/media/", "GET"),
    ],
)
def test_other_paths_are_404(client: httpx.Client, path: str, method: str) -> None:
    response = client.request(method, path, content=PNG, headers={"Content-Type": "image/png"})

    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_other_methods_are_405(client: httpx.Client, method: str) -> None:
    response = client.request(method, assets_path())

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":
        assert response.json() == {"error": "Method not allowed"}


def test_unknown_method_is_a_json_error(emulator: Emulator) -> None:
    answer = raw_exchange(emulator, b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n")

    assert raw_status(answer) == 501
    assert "error" in raw_json(answer)


# -- request framing ----------------------------------------------------------------------


def test_chunked_body_is_accepted(emulator: Emulator) -> None:
    conn = http.client.HTTPConnection(emulator.base_url.removeprefix("http://"), timeout=5)
    try:
        headers = {"Authorization": f"Bearer {emulator.token}", "Content-Type": "image/png"}
        conn.request("POST", assets_path(), body=iter([PNG[:10], PNG[10:]]), headers=headers)
        response = conn.getresponse()

        assert response.status == 200, response.read()
        assert json.loads(response.read())["email"] == EMAIL
    finally:
        conn.close()
    assert emulator.uploads[0].sha256 == hashlib.sha256(PNG).hexdigest()


def _chunked_request(emulator: Emulator, body: bytes) -> bytes:
    return (
        f"POST {assets_path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {emulator.token}\r\n"
        "Content-Type: image/webp\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + body


def test_chunk_extensions_and_trailers_are_handled(emulator: Emulator) -> None:
    body = b"5;name=value\r\nRIFF!\r\n3\r\nabc\r\n0;last\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"

    answer = raw_exchange(emulator, _chunked_request(emulator, body))

    assert raw_status(answer) == 200
    assert emulator.uploads[0].size == 8
    assert emulator.uploads[0].content_type == "image/webp"


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"])
def test_malformed_chunks_are_400(emulator: Emulator, body: bytes) -> None:
    answer = raw_exchange(emulator, _chunked_request(emulator, body))

    assert raw_status(answer) == 400
    assert raw_json(answer) == {"error": "Malformed chunked body"}


def test_chunked_body_over_the_limit_is_refused_before_reading(emulator: Emulator) -> None:
    # Only the chunk header is sent: the server must refuse from the declared size alone.
    body = f"{MAX_UPLOAD_BYTES + 1:x}\r\n".encode()

    answer = raw_exchange(emulator, _chunked_request(emulator, body))

    assert raw_status(answer) == 400
    assert "exceeds maximum of 20 MB" in str(raw_json(answer)["error"])
    assert emulator.uploads == []


def test_empty_chunked_body_is_400(emulator: Emulator) -> None:
    answer = raw_exchange(emulator, _chunked_request(emulator, b"0\r\n\r\n"))

    assert raw_json(answer) == {"error": "Content is empty"}


def test_keep_alive_serves_several_requests_on_one_connection(emulator: Emulator) -> None:
    conn = http.client.HTTPConnection(emulator.base_url.removeprefix("http://"), timeout=5)
    headers = {"Authorization": f"Bearer {emulator.token}", "Content-Type": "image/png"}
    try:
        for _ in range(3):
            conn.request("POST", assets_path(), body=PNG, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Connection") is None
            assert response.getheader("Content-Length") is not None
        # An error answered after the body was read keeps the connection too.
        emulator.fail_next(503)
        conn.request("POST", assets_path(), body=PNG, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 503
        assert response.getheader("Connection") is None
        conn.request("POST", assets_path(), body=PNG, headers=headers)
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_early_error_with_unread_body_closes_the_connection(client: httpx.Client) -> None:
    response = post(client, email="nobody@example.com")

    assert response.headers["connection"] == "close"


def test_expect_continue_is_only_sent_for_acceptable_requests(emulator: Emulator) -> None:
    head = (
        f"POST {assets_path()} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(PNG)}\r\nExpect: 100-continue\r\nConnection: close\r\n"
    )
    refused = raw_exchange(emulator, (head + "Authorization: Bearer nope\r\n\r\n").encode())
    accepted = raw_exchange(
        emulator,
        (head + f"Authorization: Bearer {emulator.token}\r\n\r\n").encode(),
        read_after=PNG,
    )

    assert refused.startswith(b"HTTP/1.1 401 ")
    assert accepted.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")


# -- simulated trouble --------------------------------------------------------------------


def test_fail_next_forces_statuses_in_order(emulator: Emulator, client: httpx.Client) -> None:
    emulator.fail_next(429, 500, 503, 502, retry_after=2)

    responses = [post(client) for _ in range(5)]

    assert [r.status_code for r in responses] == [429, 500, 503, 502, 200]
    assert responses[0].headers["retry-after"] == "2"
    assert all("retry-after" not in r.headers for r in responses[1:])
    assert all(isinstance(r.json()["error"], str) for r in responses[:4])
    assert len(emulator.uploads) == 1


def test_fail_next_429_without_retry_after_has_no_header(
    emulator: Emulator, client: httpx.Client
) -> None:
    emulator.fail_next(429)

    response = post(client)

    assert response.status_code == 429
    assert "retry-after" not in response.headers


def test_fail_next_is_not_used_up_by_requests_that_fail_anyway(
    emulator: Emulator, client: httpx.Client
) -> None:
    emulator.fail_next(503)

    assert post(client, content_type="image/bmp").status_code == 400
    assert post(client).status_code == 503
    assert post(client).status_code == 200


def test_fail_next_refuses_non_error_statuses(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="error statuses"):
        emulator.fail_next(200)


def test_fail_rate_one_always_fails() -> None:
    with Emulator(fail_rate=1.0, retry_after=3) as emu, open_client(emu) as c:
        responses = [post(c) for _ in range(12)]

    assert {r.status_code for r in responses} <= {429, 500, 503}
    assert all(r.headers["retry-after"] == "3" for r in responses if r.status_code == 429)
    assert emu.uploads == []


def test_fail_rate_with_a_seed_is_a_reproducible_mix() -> None:
    def run() -> list[int]:
        with Emulator(fail_rate=0.5, seed=7) as emu, open_client(emu) as c:
            return [post(c).status_code for _ in range(30)]

    first = run()

    assert 200 in first
    assert set(first) - {200}
    assert set(first) <= {200, 429, 500, 503}
    assert run() == first


def test_latency_still_answers() -> None:
    with Emulator(latency=0.01) as emu, open_client(emu) as c:
        assert post(c).status_code == 200


# -- retention, accounting, logging -------------------------------------------------------


def test_retention_forgets_old_uploads() -> None:
    now = [datetime(2026, 4, 6, tzinfo=UTC)]
    with Emulator(clock=lambda: now[0]) as emu, open_client(emu) as c:
        url = post(c).json()["upload"]["media"]["url"]
        now[0] += timedelta(days=29, hours=23)
        assert len(emu.uploads) == 1
        assert c.get(url).status_code == 200

        now[0] += timedelta(hours=1)

        assert emu.uploads == []
        assert c.get(url).status_code == 404


def test_custom_retention_and_received_at_come_from_the_clock() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = [start]
    with Emulator(clock=lambda: now[0], retention=timedelta(minutes=5)) as emu:
        with open_client(emu) as c:
            post(c)
            now[0] += timedelta(minutes=3)
            post(c)
        assert [u.received_at for u in emu.uploads] == [start, start + timedelta(minutes=3)]
        now[0] += timedelta(minutes=3)
        assert [u.received_at for u in emu.uploads] == [start + timedelta(minutes=3)]


def test_request_count_and_status_counts(emulator: Emulator, client: httpx.Client) -> None:
    post(client)
    post(client)
    post(client, b"")
    post(client, email="nobody@example.com")
    client.get(assets_path())

    assert emulator.request_count == 4
    assert emulator.status_counts() == {200: 2, 400: 1, 404: 1, 405: 1}


def test_log_gets_one_line_per_request_without_the_token() -> None:
    lines: list[str] = []
    with Emulator(log=lines.append, accounts=[EMAIL]) as emu:
        with open_client(emu) as c:
            post(c)
            post(c, email="nobody@example.com")
        with http_client(base_url=emu.base_url) as anonymous:
            anonymous.post(assets_path(), content=PNG)

    assert len(lines) == 3
    assert re.fullmatch(
        rf"POST {re.escape(assets_path())} -> 200 \({len(PNG)} bytes, \d+ ms\)", lines[0]
    )
    assert " -> 404 (" in lines[1]
    assert " -> 401 (" in lines[2]
    assert all(emu.token not in line for line in lines)


def test_repr_does_not_show_the_token() -> None:
    with Emulator(token="s3cret-token-value") as emu:
        assert "s3cret" not in repr(emu)
        assert "s3cret" not in str(emu)
        assert emu.base_url in repr(emu)
    assert "s3cret" not in repr(emu)


def test_random_token_when_not_given() -> None:
    first, second = Emulator(), Emulator()

    assert len(first.token) >= 32
    assert first.token != second.token


@pytest.mark.parametrize(
    "options",
    [{"fail_rate": 1.5}, {"latency": -1.0}, {"retention": timedelta(0)}, {"token": ""}],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        Emulator(**options)  # type: ignore[arg-type]


# -- lifecycle ----------------------------------------------------------------------------


def test_base_url_needs_start() -> None:
    with pytest.raises(RuntimeError):
        _ = Emulator().base_url


def test_start_and_stop_are_idempotent_and_free_the_port() -> None:
    emu = Emulator()
    assert emu.start() is emu
    url = emu.base_url
    assert emu.start().base_url == url
    port = int(url.rsplit(":", 1)[1])
    with open_client(emu) as c:
        assert post(c).status_code == 200  # leaves a keep-alive connection open

        emu.stop()
        emu.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with Emulator(port=port) as again:
        assert again.base_url == url


def test_serve_forever_returns_after_stop_from_another_thread() -> None:
    emu = Emulator()
    thread = threading.Thread(target=emu.serve_forever)
    thread.start()
    try:
        for _ in range(500):
            try:
                url = emu.base_url
                break
            except RuntimeError:
                threading.Event().wait(0.01)
        with http_client() as anonymous:
            assert anonymous.get(f"{url}/media/x").status_code == 404
    finally:
        emu.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_serve_forever_returns_cleanly_on_keyboard_interrupt() -> None:
    emu = Emulator()

    def interrupt_once_serving() -> None:
        with http_client() as anonymous:
            while True:
                try:
                    anonymous.get(f"{emu.base_url}/media/x")
                    break
                except (RuntimeError, httpx.TransportError):
                    threading.Event().wait(0.01)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # The runner may have started us with SIGINT ignored; Ctrl-C must raise here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_once_serving)
    try:
        interrupter.start()
        emu.serve_forever()
    finally:
        interrupter.join(timeout=5)
        signal.signal(signal.SIGINT, previous)
    port = int(emu.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_ipv6_loopback() -> None:
    try:
        emu = Emulator(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with emu, open_client(emu) as c:
        assert emu.base_url.startswith("http://[::1]:")
        response = post(c)
        assert response.status_code == 200
        assert response.json()["upload"]["media"]["url"].startswith("http://[::1]:")


def test_the_emulator_needs_only_the_standard_library() -> None:
    """It runs anywhere assetcache does: importing it, in a fresh interpreter, brings in no
    module from outside the standard library but assetcache's own (stdlib-only) ones."""
    script = (
        "import sys; before = set(sys.modules); import assetcache.emulator; "
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    imported = eval(result.stdout)
    assert "assetcache.emulator.server" in imported
    foreign = [
        name
        for name in imported
        if name.partition(".")[0] not in (*sys.stdlib_module_names, "assetcache")
    ]
    assert foreign == []
