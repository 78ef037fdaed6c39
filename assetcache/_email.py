"""How account emails are normalised, validated and put in the URL.

The email is half of the cache key and the one path segment of the upload URL, so it must be
normalised the same way everywhere. The rule is deliberately conservative, because merging two
accounts into one key would hand out refs that belong to another account (a failed video job),
while splitting one account in two only costs a re-upload:

- surrounding whitespace is removed;
- the domain (after the last ``@``) is lower-cased, since DNS names are case-insensitive;
- the local part is kept exactly as given (it is case-sensitive by the standard).

What is sent to useapi.net is this normalised email, percent-encoded as a single segment with
``quote(email, safe="")`` as the published examples do.
"""

from __future__ import annotations

from ._errors import InvalidEmailError, needs_setting

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: RFC 5321 caps a forward path at 256 octets, i.e. 254 characters of address.
MAX_EMAIL_LENGTH: Final = 254


def normalize_email(email: str) -> str:
    """Return the canonical form of ``email`` or raise InvalidEmailError saying what is wrong."""
    if not isinstance(email, str):
        raise InvalidEmailError(f"the account email must be a string, not {type(email).__name__}")
    candidate = email.strip()
    if not candidate:
        raise needs_setting(InvalidEmailError, "email", "no account email given")
    if _has_invisible(candidate):
        raise InvalidEmailError(
            f"the account email {candidate!r} contains control or invisible characters"
        )
    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmailError(
            f"{candidate!r} is not an email address: expected name@domain, "
            "the Luma account's email as configured at useapi.net"
        )
    normalized = f"{local}@{domain.lower()}"
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidEmailError(
            f"the account email is {len(normalized)} characters long; at most "
            f"{MAX_EMAIL_LENGTH} are allowed"
        )
    return normalized


def _has_invisible(text: str) -> bool:
    """Whether ``text`` holds a control, surrogate or format character (Cc, Cs, Cf)."""
    if text.isascii():
        # The only such ASCII characters are the controls: no need to load unicodedata, which
        # every cache hit would pay for.
        return any(ch < " " or ch == "\x7f" for ch in text)
    import unicodedata

    return any(unicodedata.category(ch) in {"Cc", "Cs", "Cf"} for ch in text)


def email_segment(email: str) -> str:
    """The email as one URL path segment (``/`` and every other reserved character escaped)."""
    from urllib.parse import quote  # only uploads need it; a cache hit does not

    return quote(email, safe="")
