"""import: a row that cannot be an upload (a time outside what the ledger can hold among them)
is refused with its row (Python) or line (CLI) number, exit 2 on the command line, and every
row before it is merged, as the message says, however many batches that is (both engines)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from assetcache import AssetCache, ImportRowError
from assetcache._cache import IMPORT_BATCH
from assetcache.cli import cli

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma

pytestmark = pytest.mark.both_engines

REF = f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"


def _row(number: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid exported row, one upload per ``number`` (its content differs)."""
    row = {
        "asset_ref": REF,
        "sha256": f"{number:064x}",
        "email": EMAIL,
        "content_type": "image/png",
        "size": 10,
        "uploaded_at": "2026-11-01T12:00:00+00:00",
        "expires_at": "2026-12-01T12:00:00+00:00",
        "upload_id": "0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11",
        "media_url": "https://storage.cdn-luma.com/uploads/x.png",
        "source": None,
        "revoked_at": None,
    }
    row.update(changes)
    return row


#: Times ``datetime.fromisoformat`` reads but the ledger cannot hold (each is outside the years
#: 1 to 9999 once in UTC, or an upload then would expire after 9999), and a path the ledger
#: cannot store: each is a bad row like any other, not an "unexpected error".
UNHOLDABLE = [
    pytest.param({"expires_at": "9999-12-31T00:00:00+00:00"}, "expires_at", id="expiry-9999"),
    pytest.param({"uploaded_at": "9999-12-31T00:00:00+00:00"}, "uploaded_at", id="upload-9999"),
    pytest.param(
        {"uploaded_at": "9999-12-31T23:00:00-05:00", "expires_at": "9999-12-31T23:00:00-05:00"},
        "uploaded_at",
        id="after-9999-in-utc",
    ),
    pytest.param({"uploaded_at": "0001-01-01T00:00:00+05:00"}, "uploaded_at", id="upload-year-0"),
    pytest.param({"expires_at": "0001-01-01T00:00:00+05:00"}, "expires_at", id="expiry-year-0"),
    pytest.param({"revoked_at": "0001-01-01T00:00:00+05:00"}, "revoked_at", id="revoked-year-0"),
    pytest.param({"source": "/frames/\ud83d.png"}, "source is not UTF-8", id="lone-surrogate"),
]


@pytest.mark.parametrize(("changes", "named"), UNHOLDABLE)
def test_a_row_the_ledger_cannot_hold_is_refused_after_the_rows_before_it(
    cache: AssetCache, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(ImportRowError, match=named) as info:
        cache.import_rows([_row(1), _row(2, **changes), _row(3)])
    assert isinstance(info.value, ValueError) and info.value.row == 2
    assert str(info.value).startswith("row 2 cannot be imported: ")
    assert "the row before it was imported" in str(info.value)
    assert [r["sha256"] for r in cache.export()] == [_row(1)["sha256"]]


def test_the_rows_before_a_bad_one_are_merged_across_batches(cache: AssetCache) -> None:
    count = IMPORT_BATCH + IMPORT_BATCH // 2  # the bad row is in the second batch
    rows = [_row(n) for n in range(1, count)] + [_row(count, size=0)]
    with pytest.raises(ImportRowError, match=f"the {count - 1} rows before it were imported"):
        cache.import_rows(iter(rows))
    assert len(list(cache.export())) == count - 1
    assert cache.import_rows(rows[:-1]).skipped == count - 1  # importing again is safe


def test_a_bad_first_row_imports_nothing(cache: AssetCache) -> None:
    with pytest.raises(ImportRowError, match="row 1 cannot be imported: .*; nothing was imported"):
        cache.import_rows([_row(1, size=0), _row(2)])
    assert list(cache.export()) == []


@pytest.fixture
def run(luma: FakeLuma, clock: Clock, ledger_location: str) -> Callable[..., Result]:
    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            ["--db", ledger_location, *args],
            obj={"clock": clock, "transport": luma.transport, "retry": FAST_RETRY},
            env={"USEAPI_TOKEN": TOKEN, "ASSETCACHE_EMAIL": None},
            input=input,
        )

    return invoke


def _lines(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.mark.parametrize(("changes", "named"), UNHOLDABLE)
def test_cli_refuses_a_row_the_ledger_cannot_hold_by_its_line(
    run: Callable[..., Result], changes: dict[str, Any], named: str
) -> None:
    text = _lines(_row(1)) + "\n" + _lines(_row(2, **changes), _row(3))  # line 2 is blank
    refused = run("import", input=text)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "line 3 cannot be imported: " in refused.stderr and named in refused.stderr
    assert "the row before it was imported" in refused.stderr
    assert "unexpected" not in refused.stderr and "Traceback" not in refused.stderr
    exported = run("export")
    assert [json.loads(line)["sha256"] for line in exported.stdout.splitlines()] == [
        _row(1)["sha256"]
    ]


def test_cli_merges_every_row_before_the_bad_line_across_batches(
    run: Callable[..., Result],
) -> None:
    count = IMPORT_BATCH + IMPORT_BATCH // 2
    text = _lines(*(_row(n) for n in range(1, count))) + _lines(_row(count, sha256="AB" * 32))
    refused = run("import", input=text)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert f"line {count} cannot be imported: sha256" in refused.stderr
    assert f"the {count - 1} rows before it were imported" in refused.stderr
    assert len(run("export").stdout.splitlines()) == count - 1
    again = run("import", input=_lines(*(_row(n) for n in range(1, count))))
    assert again.exit_code == 0
    assert again.stdout == f"added 0, revoked 0, skipped {count - 1} already present\n"


@pytest.mark.parametrize(
    ("bad_line", "says"), [(b"{oops\n", "is not JSON"), (b'{"a": "\xff"}\n', "is not UTF-8 text")]
)
def test_cli_merges_the_rows_before_a_line_it_cannot_read(
    run: Callable[..., Result], bad_line: bytes, says: str
) -> None:
    text = _lines(_row(1), _row(2)).encode() + bad_line + _lines(_row(3)).encode()
    refused = run("import", input=text)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert f"line 3 of the input {says}; the 2 rows before it were imported" in refused.stderr
    assert len(run("export").stdout.splitlines()) == 2
