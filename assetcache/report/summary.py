"""The report's summary: one line per account (refs per grade, live bytes, the next expiry),
and a line for all of them. Each count is a button the page's script turns into a filter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from .._durations import relative
from .._sizes import human_size
from .rows import GRADE_LABELS, LIVE_GRADES, Grade, Listed


@dataclass(slots=True)
class AccountSummary:
    """What one account (or, with ``index`` -1, all of them) has in the page."""

    email: str
    index: int
    counts: Counter[Grade] = field(default_factory=Counter)
    live_bytes: int = 0
    next_expiry: datetime | None = None

    @property
    def live(self) -> int:
        return sum(self.counts[g] for g in LIVE_GRADES)

    def add(self, row: Listed) -> None:
        self.counts[row.grade] += 1
        if row.grade in LIVE_GRADES:
            self.live_bytes += row.asset.size
            if self.next_expiry is None or row.asset.expires_at < self.next_expiry:
                self.next_expiry = row.asset.expires_at


def summarise(rows: Iterable[Listed], accounts: Sequence[str]) -> list[AccountSummary]:
    """One summary per account, in the order of ``accounts``, then (when there are several)
    one for all of them."""
    index = {email: n for n, email in enumerate(accounts)}
    per_account = [AccountSummary(email, n) for n, email in enumerate(accounts)]
    total = AccountSummary("all accounts", -1)
    for row in rows:
        per_account[index[row.asset.email]].add(row)
        total.add(row)
    return per_account + ([total] if len(accounts) > 1 else [])


def summary_table(summaries: Sequence[AccountSummary], now: datetime) -> str:
    head = "".join(
        f"<th class='num g-{g}' scope='col'>{label}</th>" for g, label in GRADE_LABELS.items()
    )
    lines = [_line(s, now) for s in summaries]
    foot = lines.pop() if len(lines) > 1 else ""
    return (
        "<table class='summary'><thead><tr><th scope='col'>account</th>"
        f"<th class='num' scope='col'>live</th>{head}"
        "<th class='num' scope='col'>live size</th><th scope='col'>next expiry</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody>" + (f"<tfoot>{foot}</tfoot>" if foot else "") + "</table>"
    )


def _line(summary: AccountSummary, now: datetime) -> str:
    account = "" if summary.index < 0 else str(summary.index)
    cells = [_count(summary.live, account, LIVE_GRADES)]
    cells += [_count(summary.counts[g], account, (g,)) for g in GRADE_LABELS]
    nxt = "-" if summary.next_expiry is None else relative(summary.next_expiry, now)
    return (
        f"<tr><th scope='row'>{escape(summary.email)}</th>{''.join(cells)}"
        f"<td class='num'>{human_size(summary.live_bytes)}</td><td>{nxt}</td></tr>"
    )


def _count(count: int, account: str, grades: Sequence[Grade]) -> str:
    """A count; when not zero, a button that lists those refs (``account`` "" for all)."""
    if not count:
        return "<td class='num zero'>0</td>"
    kind = f" g-{grades[0]}" if len(grades) == 1 else ""
    return (
        f"<td class='num'><button class='pick{kind}' type='button' data-account='{account}' "
        f"data-grades='{' '.join(grades)}'>{count:,}</button></td>"
    )
