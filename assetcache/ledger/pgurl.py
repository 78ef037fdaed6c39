"""PostgreSQL URLs read exactly as libpq reads them, without importing libpq or psycopg.

The console script names a shared ledger's machine file on every cache hit, where importing
psycopg alone costs more than the whole hit; and a password must be masked wherever it ends
up, including where libpq puts the parts of a URL it splits differently from its writer. Both
need the URL read as the driver reads it. ``parse`` follows libpq 18's URI parser
(``conninfo_uri_parse_options`` in fe-connect.c), which tests/test_pgurl.py holds to
psycopg's own ``conninfo_to_dict`` on generated URLs:

- the user info ends at the FIRST ``@``, and only if no ``/`` comes before it (so a raw ``@``
  in a password puts the rest of the password in the host; a raw ``/``, the whole URL in the
  host, port and database name); the user ends at its first ``:``, and the password runs to
  that ``@`` (``?``, ``#``, ``:`` and ``[`` in it are kept);
- then ``host[:port]`` pairs separated by commas (``[...]`` for IPv6), a ``/dbname``, and
  ``?key=value&...``, where a key libpq does not know is refused and a later key overrides an
  earlier part (``?host=`` over the netloc);
- every part is percent-decoded (as bytes, then UTF-8); a ``%`` not followed by two hex
  digits and ``%00`` are refused; spaces around a part are dropped and a space inside one is
  refused (both new in libpq 18: ``lenient`` parsing keeps inner spaces, as older libpqs did).

Nothing here imports more than ``os`` at import time (``tests/test_entry.py`` pins what a hit
imports), and no message quotes a part of the URL.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Final

#: What libpq recognises as a connection URI (``_driver_url`` spells every accepted scheme so).
PREFIX: Final = "postgresql://"
#: libpq 18's connection keywords (PQconninfoOptions): a query key outside them is refused.
KEYWORDS: Final = frozenset(
    {
        "application_name", "channel_binding", "client_encoding", "connect_timeout", "dbname",
        "fallback_application_name", "gssdelegation", "gssencmode", "gsslib", "host", "hostaddr",
        "keepalives", "keepalives_count", "keepalives_idle", "keepalives_interval", "krbsrvname",
        "load_balance_hosts", "max_protocol_version", "min_protocol_version", "oauth_client_id",
        "oauth_client_secret", "oauth_issuer", "oauth_scope", "options", "passfile", "password",
        "port", "replication", "require_auth", "requirepeer", "scram_client_key",
        "scram_server_key", "service", "ssl_max_protocol_version", "ssl_min_protocol_version",
        "sslcert", "sslcertmode", "sslcompression", "sslcrl", "sslcrldir", "sslkey",
        "sslkeylogfile", "sslmode", "sslnegotiation", "sslpassword", "sslrootcert", "sslsni",
        "target_session_attrs", "tcp_user_timeout", "user"
    }
)  # fmt: skip
#: Keywords whose values are secrets (libpq shows them as "*" fields), never shown.
SECRET_KEYWORDS: Final = ("password", "sslpassword", "oauth_client_secret")
#: libpq's compiled-in port.
DEFAULT_PORT: Final = "5432"
#: Where pieces of a password end up when libpq splits it: its separators in a URL.
_SEPARATORS: Final = frozenset("@/?:,[]&=# ")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
#: Pieces shorter than this are masked only where they stand alone between separators (in
#: ``shown``); in free text (a driver's message) they would mask innocent words.
MIN_PIECE: Final = 3
MASK: Final = "***"


class ConninfoError(ValueError):
    """libpq would refuse this URL. ``always``: every libpq version would (a bad ``%``
    escape); otherwise only libpq 18 does (a space inside a part, a key it knows of since)."""

    def __init__(self, message: str, *, always: bool = True) -> None:
        super().__init__(message)
        self.always = always


def is_postgres(url: str) -> bool:
    """Whether assetcache gives this location to PostgreSQL (``postgresql://``,
    ``postgres://`` or SQLAlchemy's ``postgresql+psycopg://``; the scheme in any case)."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.split("+")[0].lower() in ("postgresql", "postgres")


def driver_url(url: str) -> str:
    """The URL libpq is given: SQLAlchemy's ``postgresql+psycopg://`` spelled plainly."""
    scheme, _, rest = url.partition("://")
    return f"{PREFIX}{rest}" if scheme.lower().startswith("postgres") else url


def parse(url: str, *, lenient: bool = False) -> dict[str, str]:
    """The connection parameters the URL sets, as libpq 18 reads them (``conninfo_to_dict``),
    or ConninfoError. ``lenient``: a space inside a part and an unknown query key are kept
    rather than refused (older libpqs accept the first, newer ones may know the second)."""
    rest = _rest(url)
    options: dict[str, str] = {}
    at, p = _userinfo_end(rest), 0
    if at >= 0:
        colon = rest.find(":", 0, at)
        user = rest[: at if colon < 0 else colon]
        if user:
            options["user"] = _decode(user, "user name", lenient)
        if colon >= 0 and colon + 1 < at:
            options["password"] = _decode(rest[colon + 1 : at], "password", lenient)
        p = at + 1
    hosts, ports, p = _netlocs(rest, p)
    if any(hosts) or len(hosts) > 1:
        options["host"] = _decode(",".join(hosts), "host", lenient)
    if any(ports) or len(ports) > 1:
        options["port"] = _decode(",".join(ports), "port", lenient)
    if p < len(rest) and rest[p] == "/":
        end = rest.find("?", p)
        end = len(rest) if end < 0 else end
        if end > p + 1:
            options["dbname"] = _decode(rest[p + 1 : end], "database name", lenient)
        p = end
    if p < len(rest):  # at "?"
        _parse_query(rest[p + 1 :], options, lenient)
    for key, value in options.items():
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:  # psycopg could not decode it
                part = key if key in KEYWORDS else "query"
                raise ConninfoError(f"the URL's {part} is not UTF-8 once percent-decoded") from None
    return options


def _rest(url: str) -> str:
    """The URL after ``postgresql://``, cut where the C string libpq receives would end."""
    text = driver_url(url)
    if not text.startswith(PREFIX) and not text.startswith("postgres://"):
        raise ConninfoError("not a postgresql:// URL")
    try:
        text.encode()
    except UnicodeError:
        raise ConninfoError("the URL holds characters that cannot be encoded as UTF-8") from None
    return text.partition("://")[2].partition("\0")[0]


def _userinfo_end(rest: str) -> int:
    """Where libpq ends the user info: the first "@", if it comes before any "/"; else -1."""
    at = rest.find("@")
    slash = rest.find("/")
    return at if at >= 0 and (slash < 0 or at < slash) else -1


def _netlocs(rest: str, p: int) -> tuple[list[str], list[str], int]:
    """libpq's host[:port],... loop: the raw hosts and ports (an absent port as ""), and
    where it stopped (at "/", "?" or the end)."""
    hosts: list[str] = []
    ports: list[str] = []
    n = len(rest)
    while True:
        if p < n and rest[p] == "[":
            close = rest.find("]", p + 1)
            if close < 0:
                raise ConninfoError("an IPv6 host in the URL has no closing ']'")
            if close == p + 1:
                raise ConninfoError("an IPv6 host in the URL is empty ('[]')")
            hosts.append(rest[p + 1 : close])
            p = close + 1
            if p < n and rest[p] not in ":/?,":
                raise ConninfoError("an IPv6 host in the URL is followed by something else "
                                    "than ':', '/', '?' or ','")  # fmt: skip
        else:
            start = p
            while p < n and rest[p] not in ":/?,":
                p += 1
            hosts.append(rest[start:p])
        port = ""
        if p < n and rest[p] == ":":
            start = p = p + 1
            while p < n and rest[p] not in "/?,":
                p += 1
            port = rest[start:p]
        ports.append(port)
        if p < n and rest[p] == ",":
            p += 1
            continue
        return hosts, ports, p


def _parse_query(query: str, options: dict[str, str], lenient: bool) -> None:
    fields = query.split("&")
    if not fields[-1]:  # libpq stops at the end: a last "&" (or nothing) ends the query
        fields.pop()
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            raise ConninfoError("a URL query parameter has no '='")
        if "=" in value:
            raise ConninfoError("a URL query parameter has a second '='")
        key = _decode(key, "query key", lenient)
        value = _decode(value, f"value of {key!r}" if key in KEYWORDS else "query", lenient)
        if key == "ssl" and value == "true":  # libpq's JDBC spelling
            key, value = "sslmode", "require"
        elif key == "requiressl":  # libpq's old spelling
            key, value = "sslmode", "require" if value.startswith("1") else "prefer"
        if key not in KEYWORDS and not lenient:
            raise ConninfoError(
                "the URL has a query parameter libpq does not know (check its spelling)",
                always=False,
            )
        options[key] = value


def _decode(raw: str, part: str, lenient: bool = False) -> str:
    """libpq 18's ``conninfo_uri_decode``: percent-decoded bytes as UTF-8, spaces around the
    text dropped, a space inside it refused (kept when ``lenient``)."""
    text = raw.strip(" ")
    if "%" not in text and (lenient or " " not in text):
        return text
    if not lenient and " " in text:
        raise ConninfoError(f"the URL's {part} has a space inside: write it as %20", always=False)
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            out += ch.encode()
            i += 1
            continue
        pair = text[i + 1 : i + 3]
        if len(pair) < 2 or not (pair[0] in _HEX and pair[1] in _HEX):
            raise ConninfoError(
                f"the URL's {part} has a '%' that is not followed by two hex digits: "
                "write '%' itself as %25"
            )
        if pair == "00":
            raise ConninfoError(f"the URL's {part} holds %00, which PostgreSQL cannot take")
        out.append(int(pair, 16))
        i += 3
    # Bytes that are not UTF-8 are kept as surrogates: libpq keeps bytes, and a later part may
    # replace this one (?port= over :port); ``parse`` refuses what is left of them.
    return out.decode("utf-8", "surrogateescape")


def _lenient_decode(raw: str) -> str:
    """Valid %XX escapes decoded, anything else kept: for finding secrets, never failing."""
    if "%" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        pair = raw[i + 1 : i + 3]
        if raw[i] == "%" and len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            out.append(int(pair, 16))
            i += 3
        else:
            out += raw[i].encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "replace")


# -- identity: which database a URL names -------------------------------------------------


def identity(url: str, environ: Mapping[str, str] | None = None) -> str:
    """The database the URL connects to, as one string: each (host, port) libpq tries, the
    database and the user, with libpq's environment (PGHOST, PGPORT, PGDATABASE, PGUSER,
    PGHOSTADDR, PGSERVICE) and defaults (port 5432, user the OS user, database the user, host
    the default socket folder) filled in. Passwords and options (sslmode, application_name,
    connect_timeout...) are not part of it. ConninfoError if libpq could not read the URL.

    Host names are compared without case (DNS ignores it), socket folders without a trailing
    "/"; ``localhost`` and ``127.0.0.1`` stay two targets, as they are to libpq (a name may
    resolve to several addresses, ``~/.pgpass`` and TLS verification match the name).
    """
    env = os.environ if environ is None else environ
    options = parse(url, lenient=True)

    def setting(keyword: str, variable: str) -> str:
        # libpq: a parameter the URL leaves out is taken from its variable, even an empty one;
        # an empty value then means the default.
        value = options.get(keyword)
        return env.get(variable, "") if value is None else value

    user = setting("user", "PGUSER") or _os_user()
    dbname = setting("dbname", "PGDATABASE") or user
    hosts = setting("host", "PGHOST").split(",")
    ports = setting("port", "PGPORT").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    if len(ports) == len(hosts):
        targets = [f"{_host(h)}:{_port(p)}" for h, p in zip(hosts, ports, strict=True)]
    else:  # libpq refuses this pairing; the spelling itself is then the identity
        targets = [",".join(hosts), ",".join(ports)]
    parts = ["postgresql", ",".join(targets), dbname, user]
    for keyword, variable in (("hostaddr", "PGHOSTADDR"), ("service", "PGSERVICE")):
        if value := setting(keyword, variable):  # they change where libpq connects
            parts.append(f"{keyword}={value}")
    return "\n".join(parts)


def _host(host: str) -> str:
    host = host.strip()
    if not host:
        return ""  # libpq's default: its compiled-in socket folder
    if "/" in host:
        return host.rstrip("/") or "/"  # a socket folder: a path, case-sensitive
    return host.lower()


def _port(port: str) -> str:
    port = port.strip() or DEFAULT_PORT
    return str(int(port)) if port.isdigit() else port


def _os_user() -> str:
    """libpq's default user: the name of the effective user id (as ``pg_fe_getauthname``)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return ""


# -- secrets: what may be (part of) a password, and masking it ----------------------------


class Secrets:
    """Every text that may be a URL's secret (a password, ``sslpassword``,
    ``oauth_client_secret``) or a piece of one, as written and percent-decoded.

    Besides libpq's own reading, the writer's is taken into account: a raw ``@`` or ``/`` in a
    password makes libpq put the rest of it in the host, port or database name, where it must
    be masked too. When more ``@`` follow the one libpq ends the user info at (or it found
    none), the password is read as running to the last ``@`` before the query; when the query
    does not parse, a secret's value as running over every ``&`` not followed by a known key.
    Each such reading is cut into the pieces libpq may have split it into (at ``@ / ? : , [ ]
    & = #`` and spaces), each masked wherever it appears (pieces shorter than MIN_PIECE only
    where they stand alone, in ``shown``)."""

    def __init__(self, url: str) -> None:
        whole: set[str] = set()
        split: set[str] = set()
        rest = driver_url(url).partition("://")[2]
        try:
            options: dict[str, str] | None = parse(url, lenient=True)
        except ConninfoError:
            options = None
        if options is not None:
            whole.update(options[k] for k in SECRET_KEYWORDS if options.get(k))
        at = _userinfo_end(rest)
        if at >= 0 and (colon := rest.find(":", 0, at)) >= 0:
            whole.add(rest[colon + 1 : at])  # libpq's reading, as written
        try:  # a URL libpq 18 refuses may be split anywhere: the widest reading then
            parse(url)
            refused = False
        except ConninfoError:
            refused = True
        # So may one whose user info libpq did not see, with a port that is no number (a raw
        # "/" in the password: "user:pass/word@host" is host "user", port "pass").
        netloc = rest[: min([len(rest)] + [i for c in "/?," if (i := rest.find(c)) >= 0])]
        odd_port = at < 0 and ":" in netloc and not netloc.rpartition(":")[2].isdigit()
        wide = _wide_password(rest, at, refused or odd_port)
        if wide:
            split.add(wide)
        # libpq took the query for user info (an "@" in it, and no "/" before): its secrets
        # are split at that "@".
        query_eaten = 0 <= rest.find("?") < at
        for value, libpq_value in _query_secrets(rest):
            whole.add(libpq_value)
            if value != libpq_value or query_eaten:
                split.add(value)
        raws = whole | split
        whole |= {_lenient_decode(raw) for raw in raws}
        pieces = {p for raw in split for text in (raw, _lenient_decode(raw)) for p in _pieces(text)}
        pieces |= {_lenient_decode(p) for p in pieces}
        self.whole = sorted({w for w in whole if w}, key=len, reverse=True)
        self.pieces = sorted({p for p in pieces if p} - set(self.whole), key=len, reverse=True)

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"

    def scrubbed(self) -> list[str]:
        """What ``mask`` replaces anywhere in a text, longest first."""
        texts = [s for s in self.whole + self.pieces if len(s) >= MIN_PIECE]
        return sorted(texts, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret and every piece of one replaced by ``***``: anywhere
        when at least MIN_PIECE characters long, else only where it stands alone (between
        characters that are not letters or digits: a one-letter piece must not eat words)."""
        short = [s for s in self.whole + self.pieces if len(s) < MIN_PIECE]
        for secret in self.scrubbed():
            text = text.replace(secret, MASK)
        for secret in sorted(short, key=len, reverse=True):
            text = _replace_standalone(text, secret)
        return text

    def mask_value(self, value: str) -> str:
        """One parsed value (a host, a database name...): masked as text, and then each piece
        of it between separators that is a piece of a secret, however short."""
        masked = self.mask(value)
        if not self.pieces:
            return masked
        short = set(self.pieces)
        out, token = [], ""
        for ch in masked + "@":
            if ch in _SEPARATORS:
                out.append(MASK if token in short else token)
                out.append(ch)
                token = ""
            else:
                token += ch
        return "".join(out[:-1])

    @property
    def misencoded(self) -> bool:
        """Whether libpq splits a password (a raw ``@`` or ``/`` in it)."""
        return bool(self.pieces)


def _wide_password(rest: str, at: int, unparsed: bool) -> str:
    """The password as its writer likely meant it, when libpq reads it otherwise: up to the
    last "@" of the part before the query (of the whole URL, when libpq cannot read it)."""
    start = at + 1 if at >= 0 else 0
    query = rest.find("?", start)
    region_end = len(rest) if unparsed or query < 0 else query
    last = rest.rfind("@", start, region_end)
    if last < 0:
        return ""
    colon = rest.find(":", 0, last)
    if colon < 0 or (at >= 0 and colon > at and any(c in rest[colon:last] for c in "/?")):
        # No password, or (user info without one) a port and path before an "@" in the query.
        return ""
    return rest[colon + 1 : last]


def _query_secrets(rest: str) -> Iterable[tuple[str, str]]:
    """For each secret parameter written in the query (``?password=...``): its value as its
    writer may have meant it (running over any "&" not followed by a key libpq knows) and as
    libpq reads it (up to the next "&"), both as written."""
    _, question, query = rest.partition("?")
    if not question:
        return
    fields = query.split("&")
    for i, field in enumerate(fields):
        key, eq, value = field.partition("=")
        if not eq or _lenient_decode(key).strip(" ").lower() not in SECRET_KEYWORDS:
            continue
        wide = [value]
        for following in fields[i + 1 :]:
            next_key, next_eq, _ = following.partition("=")
            if next_eq and _lenient_decode(next_key).strip(" ") in KEYWORDS:
                break
            wide.append(following)
        yield "&".join(wide), value


def _replace_standalone(text: str, secret: str) -> str:
    out, i = [], 0
    while (j := text.find(secret, i)) >= 0:
        end = j + len(secret)
        alone = (j == 0 or not text[j - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        )
        out.append(text[i:j] + (MASK if alone else secret))
        i = end
    out.append(text[i:])
    return "".join(out)


def _pieces(text: str) -> list[str]:
    out, token = [], ""
    for ch in text:
        if ch in _SEPARATORS:
            out.append(token)
            token = ""
        else:
            token += ch
    out.append(token)
    return [p for p in out if p]


# -- showing a URL --------------------------------------------------------------------------


def shown(url: str) -> str:
    """The target libpq really connects to, as a URL built from the parts it parsed, with
    every secret (and every piece of one) as ``***``: ``postgresql://ann:***@db:5432/x``.
    A URL libpq cannot read is shown as written, with every possible secret masked."""
    secrets = Secrets(url)
    try:
        options = parse(url, lenient=True)
    except ConninfoError:
        return _masked_as_written(url, secrets)
    value = secrets.mask_value
    out = [PREFIX]
    user = options.get("user")
    if user or "password" in options:
        out.append(_quote(value(user or ""), _USER_SAFE))
        out.append(":***@" if "password" in options else "@")
    query: list[str] = [] if user != "" else ["user="]  # an empty user cannot be user info
    hosts = options.get("host")
    ports = options.get("port")
    host_list = [] if hosts is None else [value(h) for h in hosts.split(",")]
    port_list = [] if ports is None else [value(p) for p in ports.split(",")]
    # In the netloc, libpq reads a port per host (an empty one for each comma): only a port
    # list of that shape reads back the same there.
    in_netloc = all(_plain_host(h) for h in host_list) and (
        len(host_list) <= 1 if ports is None else ports != "" and len(port_list) == len(host_list)
    )
    if in_netloc:
        for i, host in enumerate(host_list):
            out.append("," if i else "")
            out.append(f"[{host}]" if ":" in host else host)
            if port_list and port_list[i]:
                out.append(":" + _quote(port_list[i], ""))
    else:
        if hosts is not None:
            query.append("host=" + _quote(",".join(host_list), _QUERY_SAFE))
        if ports is not None:
            query.append("port=" + _quote(",".join(port_list), _QUERY_SAFE))
    dbname = options.get("dbname")
    if dbname:
        out.append("/" + _quote(value(dbname), _QUERY_SAFE))
    elif dbname is not None:
        query.append("dbname=")
    for key, text in options.items():
        if key in ("user", "password", "host", "port", "dbname"):
            continue
        secret = key.lower() in SECRET_KEYWORDS  # PASSWORD= too: libpq refuses it, but meant it
        shown_value = MASK if secret else _quote(value(text), _QUERY_SAFE)
        query.append(f"{_quote(value(key), _QUERY_SAFE)}={shown_value}")
    if query:
        out.append(("" if dbname else "/") + "?" + "&".join(query))
    return "".join(out)


#: Characters shown as they are, besides letters and digits (the rest is percent-encoded).
_USER_SAFE: Final = "-._~!$'()*+;"
_QUERY_SAFE: Final = "-._~!$'()*+;:@/"


def _quote(text: str, safe: str) -> str:
    """Percent-encode what would change how the URL reads, and what is not printable ASCII."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in safe):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in _bytes(ch))
    return "".join(out).replace("%2A%2A%2A", MASK)


def _bytes(ch: str) -> bytes:
    """A character as libpq had it: a byte that was not UTF-8 is back to that byte."""
    try:
        return ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return ch.encode("utf-8", "surrogatepass")


def _plain_host(host: str) -> bool:
    """A host that reads back the same in the netloc: a name, an IPv4 or an IPv6 address."""
    if not host or host == MASK:
        return bool(host)
    if ":" in host:
        return all(c in _HEX or c in ":." for c in host)
    return all(c.isascii() and (c.isalnum() or c in "-._") for c in host)


def _masked_as_written(url: str, secrets: Secrets) -> str:
    """A URL libpq cannot read, as written, with what may be its secrets masked."""
    scheme, _, rest = url.partition("://")
    rest = secrets.mask(rest)  # first: a secret as written is then found whole
    at = rest.rfind("@")
    if at >= 0 and (colon := rest.find(":", 0, at)) >= 0:
        rest = f"{rest[:colon]}:***{rest[at:]}"
    return f"{scheme}://{rest}"


def hint(url: str) -> str:
    """What to do about a password libpq splits, for the end of an error message; else ""."""
    if not Secrets(url).misencoded:
        return ""
    return (
        "; if the URL's password holds '@', '/' or '&', percent-encode them (%40, %2F, %26): "
        "libpq splits the URL at them, and reads the rest of the password as its host, port "
        "or database"
    )
