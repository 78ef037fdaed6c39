"""fill: a Luma request payload with local image paths in, the same payload with live refs out.

Both caches share every decision here: which fields take refs, what a value in them means, which
account, and how a payload fails (all or nothing, every failing field named). ``fill`` and
``fill_many`` are written here once, as steps (see ``_orchestration``): the caches only drive
them, and so differ only in how the files are resolved (threads or tasks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from ._asset import Asset
from ._email import normalize_email
from ._errors import AssetCacheError, InvalidImageError
from ._orchestration import DEFAULT_JOBS, Steps, resolve_many
from ._refs import named_email, ref_problem, same_account

#: The fields that take an assetRef: POST /v1/luma/videos, then POST /v1/luma/images.
REF_FIELDS: Final = (
    "imageStart",
    "imageEnd",
    "imageCharacter",
    "imageRef1",
    "imageRef2",
    "imageRef3",
    "imageRef4",
)


class FillError(AssetCacheError):
    """A payload could not be filled; ``failures`` maps each failing field to its error.

    Nothing of the payload is returned: a job with one image missing would fail at Luma anyway.
    """

    def __init__(self, failures: Mapping[str, AssetCacheError]) -> None:
        self.failures = dict(failures)
        listed = "; ".join(f"{name}: {error}" for name, error in self.failures.items())
        super().__init__(f"the payload was not filled ({listed})")


@dataclass
class FillPlan:
    """A payload read: its account, the files to resolve per field, and what already failed."""

    payload: dict[str, Any]
    email: str
    files: dict[str, str] = field(default_factory=dict)
    failures: dict[str, AssetCacheError] = field(default_factory=dict)


def plan(payload: object, *, email: str | None, base_dir: str | None) -> FillPlan:
    """Read a payload: ValueError for a payload or account that cannot be used at all."""
    if not isinstance(payload, dict):
        raise ValueError("a payload must be a JSON object")
    account = _account(own_email(payload), email)
    result = FillPlan(payload, account)
    base = os.getcwd() if base_dir is None else base_dir
    for name in REF_FIELDS:
        if name in payload:
            _classify(result, name, payload[name], base)
    return result


def finish(plan: FillPlan, resolved: Mapping[str, Asset | AssetCacheError]) -> dict[str, Any]:
    """The payload with every file replaced by its ref, or FillError naming every failure."""
    failures = dict(plan.failures)
    failures.update({k: v for k, v in resolved.items() if isinstance(v, AssetCacheError)})
    if failures:
        raise FillError({name: failures[name] for name in REF_FIELDS if name in failures})
    filled = dict(plan.payload)  # same keys, same order: only the ref fields change
    for name, outcome in resolved.items():
        assert isinstance(outcome, Asset)
        filled[name] = outcome.asset_ref
    return filled


def own_email(payload: object) -> object:
    """The payload's own account, None when it has none: a missing ``email`` and
    ``"email": null`` alike (null is how JSON writers say "absent"; the field is left as it is)."""
    return payload.get("email") if isinstance(payload, dict) else None


def _account(in_payload: object, given: str | None) -> str:
    if in_payload is None:
        if given is None:
            return normalize_email("")  # raises: no account anywhere
        return normalize_email(given)
    if not isinstance(in_payload, str):
        raise ValueError("the payload's email is not a string")
    account = normalize_email(in_payload)  # the payload's own email wins
    if given is not None and normalize_email(given) != account:
        raise ValueError(
            f"the payload's email {account} contradicts the account asked for "
            f"({normalize_email(given)})"
        )
    return account


def _classify(result: FillPlan, name: str, value: object, base: str) -> None:
    if not isinstance(value, str) or not value:
        result.failures[name] = InvalidImageError(f"{value!r} is not a file path or an assetRef")
        return
    if value.startswith(("http://", "https://")):
        return  # Luma fetches URLs itself
    path = _local_path(value, base)
    if path is not None and os.path.isfile(path):
        result.files[name] = path
        return
    if shaped_like_a_ref(value):
        named = named_email(value)
        problem = ref_problem(value, result.email)
        if problem is None and named is not None and same_account(named, result.email):
            return  # already a ref of this account: left as it is
        why = problem or "it names no account"
        result.failures[name] = InvalidImageError(
            f"{value!r} is an assetRef that cannot go with {result.email}: {why}"
        )
        return
    result.failures[name] = no_such_file(value, [base] if is_relative_path(value) else [])


def no_such_file(value: str, folders: Sequence[str]) -> InvalidImageError:
    """The failure of a value that is no file, URL or ref; a relative path's names the
    ``folders`` it was looked for in."""
    where = " or ".join(folders)
    found = f"no such file in {where}" if where else "no such file"
    return InvalidImageError(
        f"{value!r} is neither an existing file ({found}), an http(s) URL nor an assetRef"
    )


def is_relative_path(value: object) -> bool:
    """Whether a ref field's value, taken as a path, would be looked for in a folder: text that
    is no URL (http, https, file), and does not start at the root or at ``~``."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith(("http://", "https://", "file://", "~")):
        return False
    return not os.path.isabs(value)


def _local_path(value: str, base: str) -> str | None:
    if value.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            return None  # a file on another host
        return unquote(parts.path)
    return os.path.join(base, os.path.expanduser(value))


def shaped_like_a_ref(value: str) -> bool:
    """``u{digits}-email:...``: the documented shape's start (the rest stays opaque)."""
    head, mark, _ = value.partition("-email:")
    return bool(mark) and head[:1] == "u" and head[1:].isdigit()


#: What a payload of a batch becomes: the filled payload, or why it was not filled.
FillOutcome = dict[str, Any] | AssetCacheError | ValueError


def fill(
    payload: dict[str, Any],
    *,
    email: str | None,
    base_dir: str | None,
    min_remaining: timedelta | None,
) -> Steps[dict[str, Any]]:
    """One payload filled, or its error raised (FillError, InvalidEmailError, ValueError)."""
    (outcome,) = yield from fill_many(
        [payload], email=email, base_dir=base_dir, min_remaining=min_remaining
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def fill_many(
    payloads: Iterable[dict[str, Any]],
    *,
    email: str | None,
    base_dir: str | None,
    min_remaining: timedelta | None,
    jobs: int = DEFAULT_JOBS,
) -> Steps[list[FillOutcome]]:
    """Every payload filled or its error, in order; every image of the batch resolved ``jobs``
    at a time, in one resolve_many per account."""
    plans = _plan_all(list(payloads), email=email, base_dir=base_dir)
    outcomes: dict[tuple[int, str], Asset | AssetCacheError] = {}
    for account, work in _work_by_account(plans).items():
        results = yield from resolve_many(
            [w[3] for w in work], email=account, jobs=jobs, min_remaining=min_remaining
        )
        outcomes.update({(w[0], w[1]): r for w, r in zip(work, results, strict=True)})
    return _assemble(plans, outcomes)


#: One image of a batch to resolve: (payload index, field, account, path).
Work = tuple[int, str, str, str]


def _plan_all(
    payloads: list[object], *, email: str | None, base_dir: str | None
) -> list[FillPlan | AssetCacheError | ValueError]:
    plans: list[FillPlan | AssetCacheError | ValueError] = []
    for payload in payloads:
        try:
            plans.append(plan(payload, email=email, base_dir=base_dir))
        except (AssetCacheError, ValueError) as exc:
            plans.append(exc)
    return plans


def _work_by_account(plans: list[FillPlan | AssetCacheError | ValueError]) -> dict[str, list[Work]]:
    """Every file of the batch to resolve, grouped by account (one resolve_many each)."""
    groups: dict[str, list[Work]] = {}
    for index, item in enumerate(plans):
        if isinstance(item, FillPlan):
            for name, path in item.files.items():
                groups.setdefault(item.email, []).append((index, name, item.email, path))
    return groups


def _assemble(
    plans: list[FillPlan | AssetCacheError | ValueError],
    outcomes: Mapping[tuple[int, str], Asset | AssetCacheError],
) -> list[FillOutcome]:
    results: list[FillOutcome] = []
    for index, item in enumerate(plans):
        if not isinstance(item, FillPlan):
            results.append(item)
            continue
        try:
            results.append(finish(item, {name: outcomes[index, name] for name in item.files}))
        except FillError as exc:
            results.append(exc)
    return results
