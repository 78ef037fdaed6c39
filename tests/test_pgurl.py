"""assetcache reads a PostgreSQL URL exactly as libpq does (``_pgurl.parse``, pure Python for
the console script's lean path), held here to psycopg's own ``conninfo_to_dict`` on generated
URLs; it shows the target libpq connects to with no piece of a password; and it names one
database the same whatever the spelling (``_pgurl.identity``)."""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assetcache.ledger import pgurl as _pgurl
from assetcache.ledger.pgurl import ConninfoError, Secrets, driver_url, identity, parse, shown

psycopg = pytest.importorskip("psycopg")

#: What makes URLs interesting: libpq's separators, percent signs and spaces.
SPECIALS = "@/?#:[]% ,&="
CHARS = st.sampled_from(string.ascii_letters + string.digits + "-._~" + SPECIALS + "éñ€")
TEXT = st.text(CHARS, max_size=12)


def libpq(url: str) -> dict[str, str] | None:
    """What libpq makes of the URL assetcache gives it, or None when it refuses it."""
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(driver_url(url)))
    except (psycopg.ProgrammingError, UnicodeError):
        return None


def ours(url: str, *, lenient: bool = False) -> dict[str, str] | None:
    try:
        return parse(url, lenient=lenient)
    except ConninfoError:
        return None


@st.composite
def encoded(draw: st.DrawFn, text: st.SearchStrategy[str] = TEXT) -> str:
    """A text as a URL writer may put it: each character raw or percent-encoded (sometimes a
    broken escape)."""
    out = []
    for ch in draw(text):
        how = draw(st.sampled_from(["raw", "raw", "encoded", "lower"]))
        if how == "raw":
            out.append(ch)
        else:
            escaped = quote(ch, safe="")
            if escaped == ch:
                escaped = "".join(f"%{b:02X}" for b in ch.encode())
            out.append(escaped.lower() if how == "lower" else escaped)
    if draw(st.integers(0, 20)) == 0:
        out.insert(
            draw(st.integers(0, len(out))), draw(st.sampled_from(["%", "%4", "%zz", "%00", "%FF"]))
        )
    return "".join(out)


KEYS = st.sampled_from(
    [
        "host", "port", "user", "password", "dbname", "sslmode", "application_name",
        "sslpassword", "connect_timeout", "ssl", "requiressl", "options", "hostaddr",
        "service", "pass%77ord", "h%6Fst", "Host", "nosuch", " host ", "",
    ]
)  # fmt: skip


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(
        st.sampled_from(["postgresql://", "postgres://", "postgresql+psycopg://", "POSTGRES://"])
    )
    parts = [scheme]
    if draw(st.booleans()):
        parts.append(draw(encoded()))
        if draw(st.booleans()):
            parts.append(":" + draw(encoded()))
        parts.append("@")
    hosts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["name", "ipv6", "text", "empty"]))
        host = {
            "name": draw(st.sampled_from(["db.internal", "127.0.0.1", "localhost", "DB.Internal"])),
            "ipv6": "[" + draw(st.sampled_from(["::1", "fe80::1%25eth0", "", "::1]x"])) + "]",
            "text": draw(encoded()),
            "empty": "",
        }[kind]
        if draw(st.booleans()):
            host += ":" + draw(
                st.one_of(st.sampled_from(["5432", "05432", "", " 5433 "]), encoded())
            )
        hosts.append(host)
    parts.append(",".join(hosts))
    if draw(st.booleans()):
        parts.append("/" + draw(encoded()))
    if draw(st.booleans()):
        fields = []
        for _ in range(draw(st.integers(0, 3))):
            field = draw(KEYS)
            if draw(st.integers(0, 8)):
                field += "=" + draw(st.one_of(encoded(), st.sampled_from(["true", "1", "0"])))
            fields.append(field)
        parts.append("?" + "&".join(fields) + draw(st.sampled_from(["", "", "&"])))
    return "".join(parts)


SOMETIMES_RANDOM = st.one_of(
    urls(), st.builds(lambda s: "postgresql://" + s, st.text(CHARS, max_size=40))
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOMETIMES_RANDOM)
@example("postgresql://ann:Qx7@Zk9secret@127.0.0.1:5432/db")
@example("postgresql://alice:SECRET/PW@host/t3")
@example("postgresql://alice:Tr0ub4dor?SECRETPW@host/t3")
@example("postgresql://h?x@y")
@example("postgresql://a:b@c:d@e/f")
@example("postgresql:// a :  b @ h /d ")
@example("postgresql://h:  /d")
@example("postgresql://h/d?sslmode=")
@example("postgresql://h/d?requiressl=")
@example("postgresql://,/d")
@example("postgresql://[ ::1 ]/d")
@example("postgresql://h/d?a=b&")
@example("postgresql://h/d?&a=b")
@example("postgresql://u:p\x00w@h/d")
@example("postgresql://u@h:%FF?port=5432")  # libpq keeps bytes: a later part replaces them
def test_urls_are_read_as_libpq_reads_them(url: str) -> None:
    expected = libpq(url)
    assert ours(url) == expected
    if expected is not None:  # lenient reading only ever accepts more
        assert ours(url, lenient=True) == expected


def test_the_keywords_are_libpqs() -> None:
    known = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
    assert known == _pgurl.KEYWORDS
    secret = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults() if o.dispchar == b"*"}
    assert secret == set(_pgurl.SECRET_KEYWORDS)


def fragments(secret: str) -> list[str]:
    """Each maximal run of at least 3 characters of a secret between URL separators."""
    runs, run = [], ""
    for ch in secret + "@":
        if ch in "@/?#:[]% ,&=":
            if len(run) >= 3:
                runs.append(run)
            run = ""
        else:
            run += ch
    return runs


PASSWORD_CHARS = st.sampled_from(string.ascii_letters + string.digits + "@/?#:[]% &=")


@settings(max_examples=600, deadline=None)
@example(password="/?sslmode=", raw=True, host="127.0.0.1", tail="/db")  # a query, to libpq
@example(password="Qx7@Zk9secret", raw=True, host="127.0.0.1", tail="/db")
@given(
    password=st.text(PASSWORD_CHARS, min_size=1, max_size=24),
    raw=st.booleans(),
    host=st.sampled_from(["127.0.0.1", "db.internal", "[::1]", "h1,h2:5433"]),
    tail=st.sampled_from(["/db", "/db?sslmode=disable", "", "?application_name=x"]),
)
def test_no_piece_of_a_password_shows(password: str, raw: bool, host: str, tail: str) -> None:
    written = password if raw else quote(password, safe="")
    url = f"postgresql://ann:{written}@{host}:5432{tail}"
    if "," in host:
        url = f"postgresql://ann:{written}@{host}{tail}"
    text = shown(url)
    public = f"postgresql ann {host} 5432 {tail} could not translate host name"
    for piece in fragments(password):
        if piece in public:  # in the URL's other parts anyway: no news
            continue
        assert piece not in text, (url, text)
        assert piece not in Secrets(url).mask(f"could not translate host name {url!r}: {text}")


@settings(max_examples=400, deadline=None)
@given(
    password=st.text(PASSWORD_CHARS, min_size=1, max_size=24),
    raw=st.booleans(),
    key=st.sampled_from(["password", "pass%77ord", "sslpassword"]),
    before=st.sampled_from(["", "sslmode=disable&"]),
    after=st.sampled_from(["", "&sslmode=disable", "&application_name=x"]),
)
def test_no_piece_of_a_query_secret_shows(
    password: str, raw: bool, key: str, before: str, after: str
) -> None:
    written = password if raw else quote(password, safe="")
    url = f"postgresql://ann@db.internal:5432/db?{before}{key}={written}{after}"
    text = shown(url)
    public = f"postgresql ann db.internal 5432 {before} {key} {after} invalid URI query parameter"
    for piece in fragments(password):
        if piece not in public:
            assert piece not in text, (url, text)
            assert piece not in Secrets(url).mask(f"invalid URI query parameter: {url!r}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://ann:secret@db.internal:5432/assetcache?sslmode=require",
         "postgresql://ann:***@db.internal:5432/assetcache?sslmode=require"),
        ("postgresql+psycopg://ann:s%40cret@127.0.0.1/db", "postgresql://ann:***@127.0.0.1/db"),
        ("postgres://a:p%40ss@[::1]:5433/d?PASSWORD=x", "postgresql://a:***@[::1]:5433/d?PASSWORD=***"),
        ("postgresql:///d?host=/run/pg&password=s3cret&sslmode=disable",
         "postgresql://:***@/d?host=/run/pg&sslmode=disable"),
        ("postgresql:///d?pass%77ord=SECRET", "postgresql://:***@/d"),
        ("postgresql://a@h/d?sslpassword=KEYPASS", "postgresql://a@h/d?sslpassword=***"),
        ("postgresql://h/d?ssl=true", "postgresql://h/d?sslmode=require"),
        ("postgresql://h/?host=other&port=6543", "postgresql://other:6543"),
        # libpq's reading of a raw "@" and "/": the target it really tries, the pieces masked
        ("postgresql://ann:Qx7@Zk9secret@127.0.0.1:5432/db",
         "postgresql://ann:***@/db?host=***@127.0.0.1&port=5432"),
        ("postgresql://alice:SECRET/PW@host/t3", "postgresql://alice:***/***@host/t3"),
        ("postgresql://alice:Tr0ub4dor?SECRETPW@host/t3", "postgresql://alice:***@host/t3"),
        ("postgresql://ann:SECRETPW%zz@127.0.0.1:9/x", "postgresql://ann:***@127.0.0.1:9/x"),
    ],
)  # fmt: skip
def test_path_shows_the_target_libpq_connects_to(url: str, expected: str) -> None:
    assert shown(url) == expected


@settings(max_examples=500, deadline=None)
@given(urls())
@example("postgresql://0000000000%2C0")  # one host holding a comma: libpq splits it anyway
@example("postgresql://db.internal/d?port=")
@example("postgresql://db.internal/d?user=")
@example("postgresql://h1,h2,h3?%FF?host=x")  # a key that is not UTF-8, kept by lenient reading
@example("postgresql://:00000@0000?,db.internal/00000?host=true")  # a key holding the password
def test_what_is_shown_reads_back_as_the_same_target(url: str) -> None:
    """Built from the parsed parts, the shown URL names the same target to libpq: the same
    parameters, secrets as ***."""
    parsed = ours(url, lenient=True)
    secrets = Secrets(url)
    if parsed is None or secrets.misencoded:
        return
    expected = {}
    for key, value in parsed.items():
        if key.lower() in _pgurl.SECRET_KEYWORDS:
            expected[key] = "***"
        elif key in ("host", "port"):
            expected[key] = ",".join(secrets.mask_value(v) for v in value.split(","))
        elif key in ("user", "dbname"):
            expected[key] = secrets.mask_value(value)
        else:  # an unknown key (lenient reading) may hold a secret too
            expected[secrets.mask_value(key)] = secrets.mask_value(value)
    assert ours(shown(url), lenient=True) == expected


# -- identity --------------------------------------------------------------------------------

SAME = [
    "postgresql://ann:pw@db.internal:5432/ledger",
    "postgresql://ann@db.internal/ledger",
    "postgres://ann:other-pw@DB.internal:5432/ledger",
    "postgresql+psycopg://ann:pw@db.internal:05432/ledger?sslmode=require&application_name=x",
    "postgresql://db.internal/ledger?user=ann&password=pw&connect_timeout=3",
    "postgresql:///ledger?host=db.internal&port=5432&user=ann",
    "postgresql://ann@/?host=db.internal&dbname=ledger",
    "postgresql://ann:p%40ss@db.internal:5432/ledger?sslpassword=x&passfile=/tmp/pgpass",
]


def test_spellings_of_one_database_have_one_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    assert len({identity(url) for url in SAME}) == 1
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")
    assert identity("postgresql://ann@db.internal/ledger") == identity(SAME[0])
    # libpq's environment and defaults fill what the URL leaves out
    monkeypatch.setenv("PGHOST", "db.internal")
    monkeypatch.setenv("PGUSER", "ann")
    assert identity("postgresql:///ledger") == identity(SAME[0])
    monkeypatch.setenv("PGDATABASE", "ledger")
    assert identity("postgresql://") == identity(SAME[0])
    monkeypatch.setenv("PGPORT", "5432")
    assert identity("postgresql://db.internal") == identity(SAME[0])


def test_another_user_database_port_or_host_is_another_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    others = [
        "postgresql://bob@db.internal/ledger",
        "postgresql://ann@db.internal/other",
        "postgresql://ann@db.internal:5433/ledger",
        "postgresql://ann@db2.internal/ledger",
        "postgresql://ann@10.0.0.5/ledger",
        "postgresql://ann@db.internal,db2.internal/ledger",
        "postgresql://ann@db.internal/ledger?hostaddr=10.0.0.5",
        "postgresql://ann@/ledger",  # libpq's default socket folder
        "postgresql://ann@/ledger?host=/run/postgresql",
    ]
    identities = {identity(url) for url in [SAME[0], *others]}
    assert len(identities) == len(others) + 1


def test_default_user_and_database_are_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pwd

    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert identity("postgresql://h") == identity(f"postgresql://{me}@h/{me}")
    assert identity("postgresql://h/?user=") == identity(f"postgresql://{me}@h")
