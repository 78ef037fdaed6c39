"""report: the HTML page's content and escaping, without a browser (see
test_report_in_a_browser.py for the page in a real one); both caches, both engines; the CLI.

The page lists its rows from a JSON data block (its script shows them a page at a time), so
most checks read that block: each row's grade, size text, time left and picture.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache
from assetcache._asset import Asset
from assetcache._sizes import human_size
from assetcache.report import build
from assetcache.report.chart import per_day, scale
from assetcache.report.thumbnails import EMBED_MAX_BYTES, Thumbnails

from .conftest import EMAIL, Clock, png, write

HOSTILE = "<script>alert(1)</script>'\"&x.png"
#: The fields of a row of the data block, in the order report/rows.py writes them.
FIELDS = (
    *("ref", "account", "path", "size", "sizeText", "type", "left", "leftText", "grade"),
    *("expires", "src", "fallback", "image"),
)


def data_of(page: str) -> dict[str, Any]:
    """The page's data block, with each row as a dict (the fields page.js unpacks)."""
    found = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    data["rows"] = [dict(zip(FIELDS, row, strict=True)) for row in data["rows"]]
    return data


def asset(
    ref: str,
    now: datetime,
    left: timedelta,
    *,
    email: str = EMAIL,
    source: str | None = None,
    data: bytes = b"",
    revoked: bool = False,
    size: int | None = None,
) -> Asset:
    return Asset(
        asset_ref=ref,
        sha256=sha256(data or ref.encode()).hexdigest(),
        email=email,
        content_type="image/png",
        size=len(data) if size is None else size,
        uploaded_at=now + left - timedelta(days=30),
        expires_at=now + left,
        upload_id="u-" + ref,
        media_url=f"https://cdn.example.com/{ref}.png",
        source=source,
        revoked_at=now - timedelta(hours=1) if revoked else None,
    )


@pytest.mark.both_engines
def test_rows_are_graded_and_every_text_is_escaped(
    cache: AssetCache, clock: Clock, tmp_path: Path
) -> None:
    hostile = write(tmp_path / HOSTILE, png("h"))
    cache.resolve(hostile, email=EMAIL)
    cache.resolve(png("dead"), email="b@example.com")
    clock.advance(timedelta(days=25))
    soon = cache.resolve(png("fresh"), email=EMAIL)
    clock.advance(timedelta(days=6))  # the first two died a day ago
    rows = {r["ref"]: r for r in data_of(cache.report())["rows"]}
    assert rows[soon.asset_ref]["grade"] == "later"  # 24 days left
    assert sorted(r["grade"] for r in rows.values()) == ["expired", "expired", "later"]
    clock.advance(timedelta(days=-3))  # the first two have 2 days left
    page = cache.report()
    rows = {r["ref"]: r for r in data_of(page)["rows"]}
    assert sorted(r["grade"] for r in rows.values()) == ["later", "week", "week"]
    assert "<script>alert(1)" not in page  # in the summary's text, nor in the data block
    assert str(hostile) in {r["path"] for r in rows.values()}  # the name, as data
    assert page.count("<script") == 2 and page.count("</script>") == 2  # data, and ours
    mine = data_of(cache.report(email=EMAIL))
    assert len(mine["rows"]) == 2 and mine["accounts"] == [EMAIL]
    assert "b@example.com" not in cache.report(email=EMAIL)


def test_grades_part_a_ref_with_hours_left_from_one_with_days_left() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    lefts = {
        "five-hours": timedelta(hours=5),
        "just-under-a-day": timedelta(hours=23, minutes=59),
        "a-day": timedelta(days=1),
        "six-days": timedelta(days=6),
        "seven-days": timedelta(days=7),
        "gone": timedelta(hours=-2),
    }
    assets = [asset(ref, now, left) for ref, left in lefts.items()]
    assets.append(asset("forgotten", now, timedelta(days=3), revoked=True))
    assets.append(asset("future", now, timedelta(days=40)))  # clock ran ahead: left out
    rows = {r["ref"]: r for r in data_of(build(assets, now))["rows"]}
    assert {ref: r["grade"] for ref, r in rows.items()} == {
        "five-hours": "day",
        "just-under-a-day": "day",
        "a-day": "week",
        "six-days": "week",
        "seven-days": "later",
        "gone": "expired",
        "forgotten": "revoked",
    }
    assert rows["five-hours"]["leftText"] == "5h"
    assert rows["five-hours"]["left"] == 5 * 3600
    assert rows["gone"]["leftText"] == "2h ago" and rows["gone"]["left"] == -7200
    assert rows["forgotten"]["leftText"] == "revoked 1h ago"
    assert rows["six-days"]["expires"] == "2026-01-07 12:00"


def test_the_summary_counts_each_account_and_their_sum() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = "a@example.com", "<b>@example.com"
    assets = [
        asset("a1", now, timedelta(hours=3), email=a, size=2048),
        asset("a2", now, timedelta(days=10), email=a, size=1024),
        asset("a3", now, timedelta(days=-1), email=a, size=1),
        asset("b1", now, timedelta(days=2), email=b, size=5 * 1024 * 1024),
    ]
    page = build(assets, now)
    summary = re.search(r"<table class='summary'>.*?</table>", page)
    assert summary is not None
    lines = re.findall(r"<tr><th scope='row'>(.*?)</th>(.*?)</tr>", summary.group(0))
    counts = {name: re.findall(r">([\d,]+)<", cells) for name, cells in lines}
    # live, under 24 h, under 7 days, later, expired, revoked
    assert counts["a@example.com"] == ["2", "1", "0", "1", "1", "0"]
    assert counts["&lt;b&gt;@example.com"] == ["1", "0", "1", "0", "0", "0"]
    assert counts["all accounts"] == ["3", "1", "1", "1", "1", "0"]
    cells = dict(lines)
    assert "3.0 KiB" in cells["a@example.com"]  # live bytes, in ls's units
    assert "5.0 MiB" in cells["&lt;b&gt;@example.com"]
    assert "<b>" not in page
    # Each count is a filter: its account's number in the page's list, and its grades.
    assert data_of(page)["accounts"] == [b, a]
    assert "data-account='1' data-grades='day'>1</button>" in page
    assert "data-account='' data-grades='day week later'>3</button>" in page


def test_the_chart_has_its_numbers_and_axes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    lefts = [timedelta(hours=h) for h in (1, 2, 30)] + [timedelta(days=29, hours=23)] * 12
    assert per_day(lefts)[:2] == [2, 1] and per_day(lefts)[-1] == 12
    assert scale(0) == (1, 1) and scale(7) == (8, 2) and scale(333) == (400, 100)
    assert scale(10_000) == (10_000, 2000)
    page = build([asset(f"r{n}", now, left) for n, left in enumerate(lefts)], now)
    svg = re.search(r"<svg class='chart'.*?</svg>", page)
    assert svg is not None
    text = re.findall(r"<text class='(\w+)[^']*'[^>]*>([^<]*)</text>", svg.group(0))
    assert [t for kind, t in text if kind == "count"] == ["2", "1", "12"]  # on the bars
    assert [t for kind, t in text if kind == "y"] == ["0", "5", "10", "15", "refs"]  # the axis
    assert ("x", "today") in text and ("x", "+7 d") in text
    bars = re.findall(r"<rect class='bar (g-\w+)'", svg.group(0))
    assert bars[0] == "g-day" and set(bars[1:7]) == {"g-week"} and set(bars[7:]) == {"g-later"}
    assert len(bars) == 30


def test_sizes_read_as_ls_prints_them(run: Callable[..., Any], tmp_path: Path) -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 20 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "20.0 MiB",
        "3.0 GiB",
    ]
    image = write(tmp_path / "a.png", png("a" * 3000))
    run("ref", str(image), "-e", EMAIL)
    out = tmp_path / "report.html"
    assert run("report", "-o", str(out)).exit_code == 0
    (row,) = data_of(out.read_text())["rows"]
    assert row["sizeText"] == "2.9 KiB"
    assert re.search(r"\s2\.9 KiB\s", run("ls").stdout)  # the same words in ls's SIZE column


def test_small_local_files_are_embedded_and_others_are_linked(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    small, edited, large = png("small"), png("before"), png("L" * EMBED_MAX_BYTES)
    for name, data in (("small", small), ("edited", png("after!")), ("large", large)):
        (tmp_path / f"{name}.png").write_bytes(data)
    os.mkfifo(tmp_path / "fifo.png")  # must not block the report
    assets = [
        asset("small", now, timedelta(days=3), source=str(tmp_path / "small.png"), data=small),
        asset("twin", now, timedelta(days=5), source=str(tmp_path / "small.png"), data=small),
        asset("edited", now, timedelta(days=3), source=str(tmp_path / "edited.png"), data=edited),
        asset("large", now, timedelta(days=3), source=str(tmp_path / "large.png"), data=large),
        asset("fifo", now, timedelta(days=3), source=str(tmp_path / "fifo.png"), data=small[:9]),
        asset("bytes", now, timedelta(days=3)),
        asset("dead", now, timedelta(days=-3), source=str(tmp_path / "large.png"), data=large),
    ]
    page = build(assets, now)
    data = data_of(page)
    rows = {r["ref"]: r for r in data["rows"]}
    # One embedded copy per content, shared by the rows that hold it.
    assert data["images"] == ["data:image/png;base64," + _b64(small)]
    assert rows["small"]["image"] == rows["twin"]["image"] == 0
    assert rows["small"]["src"] == rows["small"]["fallback"] == ""
    # Edited since, too large, not a regular file: the CDN's copy, then the local file.
    for ref in ("edited", "large", "fifo"):
        assert rows[ref]["image"] == -1
        assert rows[ref]["src"] == f"https://cdn.example.com/{ref}.png"
        assert rows[ref]["fallback"] == (tmp_path / f"{ref}.png").as_uri()
    assert rows["bytes"]["src"] == "https://cdn.example.com/bytes.png"
    assert rows["bytes"]["fallback"] == ""  # bytes have no file
    assert rows["dead"]["src"] == (tmp_path / "large.png").as_uri()  # its CDN copy is gone
    assert "img-src https://cdn.example.com data: file:;" in page


def test_embedding_stops_at_the_budget(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    thumbnails = Thumbnails(budget=2 * len(png("0")))
    for n in range(3):
        (tmp_path / f"{n}.png").write_bytes(png(str(n)))
    pictures = [
        thumbnails.picture(
            asset(
                str(n), now, timedelta(days=3), source=str(tmp_path / f"{n}.png"), data=png(str(n))
            ),
            live=True,
        )
        for n in range(3)
    ]
    assert [p.image for p in pictures] == [0, 1, -1]
    assert len(thumbnails.images) == 2 and thumbnails.origins == {"https://cdn.example.com"}


def test_no_ledger_text_ends_the_data_block_or_breaks_the_page() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ref = "</script><script>alert(1)</script><!--"
    source = "/frames/\udcff\u2028</SCRIPT>.png"  # an undecodable byte, as os.fsdecode gives it
    page = build([asset(ref, now, timedelta(days=3), source=source)], now)
    page.encode()  # writable as UTF-8: no lone surrogate outside the JSON's escapes
    assert page.count("</script>") == 2 and "<!--" not in page and "</SCRIPT>" not in page
    (row,) = data_of(page)["rows"]
    assert row["ref"] == ref and row["path"] == source


def test_cli_report(run: Callable[..., Any], tmp_path: Path) -> None:
    run("ref", str(write(tmp_path / "a.png", png("a"))), "-e", EMAIL)
    out = tmp_path / "report.html"
    result = run("report", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert run("report").exit_code == 2  # -o is required


def _b64(data: bytes) -> str:
    from base64 import b64encode

    return b64encode(data).decode()
