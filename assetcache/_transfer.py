"""Moving ledgers: upload rows as plain dicts (one JSON object a line), and what a row must be
to be imported.

An imported row will be handed out as a live ref, so it is held to the rules of a row this
library records itself: the ref is the contract's and names the row's account, the expiry is
never later than the retention allows after the upload time, the content type and size are
ones an upload can have. A row that breaks one is refused with the reason, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ._asset import EXPORT_FIELDS, RETENTION, Asset
from ._email import normalize_email
from ._errors import InvalidEmailError
from ._refs import MAX_ID_LENGTH, ref_problem, text_problem, url_problem
from .content.sniff import MAX_UPLOAD_BYTES, SUPPORTED_TYPES

_HEX: Final = frozenset("0123456789abcdef")
#: Columns added after the first export format: rows from older ledgers may lack them.
_OPTIONAL: Final = frozenset({"revoked_at", "host"})
#: The last moment an upload can have happened: its expiry, RETENTION later, must still be a
#: time (Python's, and so the ledger's, end at the year 9999).
_LATEST_UPLOAD: Final = datetime.max.replace(tzinfo=UTC) - RETENTION


def row_of(asset: Asset) -> dict[str, Any]:
    """An upload as exported: every column of the ledger but its local row id."""
    data = asset.to_dict()
    return {name: data[name] for name in EXPORT_FIELDS}


def asset_of(row: object) -> Asset:
    """The Asset a row to import describes, or ValueError saying which field is wrong."""
    if not isinstance(row, Mapping):
        raise ValueError("not a JSON object")
    missing = [name for name in EXPORT_FIELDS if name not in row and name not in _OPTIONAL]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    email = _email(row["email"])
    uploaded_at, expires_at = _time(row, "uploaded_at"), _time(row, "expires_at")
    if uploaded_at > _LATEST_UPLOAD:
        raise ValueError(
            "uploaded_at is later than any upload can be: its expiry would fall after the year 9999"
        )
    if expires_at - uploaded_at > RETENTION:  # a difference: a sum could overflow
        raise ValueError(
            f"expires_at is more than {RETENTION.days} days after uploaded_at: no upload lives "
            "that long"
        )
    _check(row, "asset_ref", ref_problem(row["asset_ref"], email))
    _check(row, "upload_id", text_problem(row["upload_id"], MAX_ID_LENGTH))
    _check(row, "media_url", url_problem(row["media_url"]))
    return Asset(
        asset_ref=row["asset_ref"],
        sha256=_sha256(row["sha256"]),
        email=email,
        content_type=_content_type(row["content_type"]),
        size=_size(row["size"]),
        uploaded_at=uploaded_at,
        expires_at=expires_at,
        upload_id=row["upload_id"],
        media_url=row["media_url"],
        source=_source(row["source"]),
        revoked_at=None if row.get("revoked_at") is None else _time(row, "revoked_at"),
        host=_host(row.get("host")),
    )


def _check(row: Mapping[str, Any], name: str, problem: str | None) -> None:
    if problem is not None:
        raise ValueError(f"{name} {problem}")


def _email(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("email is not a string")
    try:
        return normalize_email(value)
    except InvalidEmailError as exc:
        raise ValueError(f"email: {exc}") from None


def _time(row: Mapping[str, Any], name: str) -> datetime:
    value = row[name]
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"{name} is not an ISO 8601 time with its UTC offset")
    try:
        return moment.astimezone(UTC)  # the ledger holds UTC: the time must exist there
    except OverflowError:
        raise ValueError(
            f"{name} is not a time the ledger can hold: in UTC it falls outside the years 1 to 9999"
        ) from None


def _sha256(value: object) -> str:
    if not isinstance(value, str) or len(value) != 64 or not _HEX.issuperset(value):
        raise ValueError("sha256 is not 64 lowercase hex digits")
    return value


def _content_type(value: object) -> str:
    if value not in SUPPORTED_TYPES:
        raise ValueError(f"content_type is not one of {', '.join(SUPPORTED_TYPES)}")
    return str(value)


def _size(value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_UPLOAD_BYTES:
        raise ValueError(f"size is not a whole number of bytes from 1 to {MAX_UPLOAD_BYTES}")
    return value


def _host(value: object) -> str | None:
    if value is None:
        return None
    _check({}, "host", text_problem(value, 255))
    return str(value)


def _source(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise ValueError("source is neither null nor an absolute path")
    try:
        value.encode("utf-8")  # the ledger records only UTF-8 paths (stat_cache.recordable_path)
    except UnicodeEncodeError:
        raise ValueError(
            "source is not UTF-8 text: it holds a lone surrogate (an unpaired \\ud800-\\udfff "
            "escape); give null or the path as UTF-8"
        ) from None
    return value
