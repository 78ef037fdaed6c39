"""Whether a string a server answered may be recorded and handed out: the assetRef above all.

An assetRef is opaque (the contract documents two shapes, ``u{userid}-email:{email}-image:{uuid}``
and ``u{userid}-email:{email}:{uuid}``), but what we record is pasted into shell variables,
JSON bodies and terminals, so it must be one bounded run of printable characters; and a ref
that names an account must name the one it was uploaded for, since a ref of another account
fails every video job that uses it.

Imported on the cache-hit path too: only builtins, no ``re``, no ``unicodedata``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: The documented shape is at most ``u`` + a user id (20 digits is a 64-bit number) +
#: ``-email:`` (7) + an email (254, RFC 5321) + ``-image:`` (7) + a UUID (36) = 325
#: characters. 512 leaves room for a longer id or an extra suffix while keeping a hostile
#: megabyte out of the ledger.
MAX_REF_LENGTH: Final = 512
#: ``upload.id`` is documented as a UUID (36 characters); other ids fit easily.
MAX_ID_LENGTH: Final = 256
#: CDN URLs are short; 2048 is the classic practical limit of URLs browsers and proxies keep.
MAX_URL_LENGTH: Final = 2048
#: How much of a refused value an error message quotes.
EXCERPT_LENGTH: Final = 40

_EMAIL_MARK: Final = "-email:"


def text_problem(value: object, limit: int, *, spaces: bool = False) -> str | None:
    """None if ``value`` is a non-empty, printable str of at most ``limit`` characters, without
    whitespace (but ASCII spaces inside it, with ``spaces``); else why not ("is missing",
    "contains control or invisible characters"...)."""
    if value is None:
        return "is missing"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    # isprintable() is False for every Unicode category C* (control, format, surrogate,
    # private use, unassigned) and every separator but the ASCII space, which leaves only the
    # space among whitespace characters; both checks run in C.
    if not value.isprintable():
        return "contains control, invisible or whitespace characters"
    if " " in value and not (spaces and value.strip(" ") == value):
        return "contains spaces"
    return None


def url_problem(value: object) -> str | None:
    """Like ``text_problem`` for an absolute http(s) URL with a host."""
    problem = text_problem(value, MAX_URL_LENGTH)
    if problem is not None or not isinstance(value, str):
        return problem
    scheme, separator, rest = value.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not separator or scheme.lower() not in ("http", "https") or not host:
        return "is not an http(s) URL"
    return None


def named_email(asset_ref: str) -> str | None:
    """The account email an assetRef names, or None when it has no ``-email:`` part.

    ``-image:`` (the documented format) or the last ``:`` (the published example) ends it; a
    UUID contains neither, and the first ``-email:`` starts it, since a user id has none.
    """
    _, mark, rest = asset_ref.partition(_EMAIL_MARK)
    if not mark:
        return None
    named, separator, _ = rest.rpartition("-image:")
    if not separator:
        named, separator, _ = rest.rpartition(":")
    return named if separator else rest


def same_account(a: str, b: str) -> bool:
    """Whether two emails are one account: the local part exactly, the domain in any case.

    The rule of assetcache._email.normalize_email, applied to both sides.
    """
    local_a, at_a, domain_a = a.rpartition("@")
    local_b, at_b, domain_b = b.rpartition("@")
    return bool(at_a and at_b) and local_a == local_b and domain_a.lower() == domain_b.lower()


def ref_problem(asset_ref: object, email: str) -> str | None:
    """None if ``asset_ref`` may be recorded for the (normalised) account ``email``, else why not.

    The ref stays opaque (any shape passes, one without ``-email:`` too) except that an email
    it names must be ``email``'s account.
    """
    problem = text_problem(asset_ref, MAX_REF_LENGTH, spaces=True)
    if problem is not None or not isinstance(asset_ref, str):
        return problem
    named = named_email(asset_ref)
    if named is not None and not same_account(named, email):
        return f"names another account ({excerpt(named)})"
    # An account email may hold a space (a quoted local part): the only spaces a ref may have.
    if asset_ref.count(" ") != (named or "").count(" "):
        return "contains spaces"
    return None


def excerpt(value: str, limit: int = EXCERPT_LENGTH) -> str:
    """The start of ``value`` quoted and escaped like repr(): no control character gets out."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")
