"""Alerts and digests, delivered through apprise from an outbox (PRODUCT.md §4b).

What is sent: a play opened (to its owner), a task overdue (to its owner, once), an account
dropping a health band, a KPI out of its expected range (the "alerts" setting), and each
member's digest (daily or weekly, their accounts or all). Every message says what happened,
on which account, why, what to do, and links to the account (`APP_BASE_URL`).

Where it goes: every alert to the team's channels (the `NOTIFY_URLS` environment variable,
comma-separated apprise URLs, and the destinations an admin stores in Settings); a message
addressed to a member also to their email, through the apprise mail URL `NOTIFY_EMAIL_URL`
(e.g. `mailtos://user:pass@smtp.example.com?from=cs@example.com`, the member's address is
added as `to=`), at once if they chose "immediate", otherwise only in their digest.

Reliable and never twice: a message is a row of `notifications` with a unique dedupe key,
written in the transaction of what caused it; each destination gets a `deliveries` row,
marked sent as soon as apprise reports success; a failure is retried with backoff and,
after `NOTIFY_MAX_ATTEMPTS` tries (5), shown as failed in the delivery log. (A crash between
apprise's send and the commit that records it could send that one message again: delivery is
at least once, never more for a message recorded as sent.)
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, insert, select, true, update
from sqlmodel import Session

from db.models import Account, Delivery, Destination, Notification, Play, PlayTask, TeamMember, utcnow

KINDS = ("play_opened", "task_overdue", "band_dropped", "kpi", "digest", "test")
ALERT_KINDS = ("play_opened", "task_overdue", "band_dropped", "kpi")
DIGESTS = ("immediate", "daily", "weekly")
DIGEST_LABELS = {"immediate": "at once", "daily": "daily digest", "weekly": "weekly digest (Mondays)"}
SCOPES = ("mine", "all")
SCOPE_LABELS = {"mine": "my accounts", "all": "all accounts"}
ROLE_DEFAULTS = {"csm": ("daily", "mine"), "leader": ("weekly", "all"), "admin": ("weekly", "all")}
DEFAULT_BASE_URL = "http://localhost:8501"
# A delivery marked "sending" longer than this belongs to a run that died: it is retried.
CLAIM_MINUTES = 10
# A digest lists this many of each kind of item, then says how many more.
SHOWN = 25
# A message that found no destination for this long is old news: it expires unsent.
MAX_AGE = timedelta(days=2)


# ----------------------------------------------------------------------------- configuration


def base_url() -> str:
    return (os.environ.get("APP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def account_link(external_id: str) -> str:
    return f"{base_url()}/accounts?account={quote(str(external_id), safe='')}"


def team_urls() -> list[str]:
    """The apprise URLs of NOTIFY_URLS (every alert goes there)."""
    return [u.strip() for u in (os.environ.get("NOTIFY_URLS") or "").split(",") if u.strip()]


def email_url(email: str) -> str | None:
    """The apprise URL that mails one member (NOTIFY_EMAIL_URL with to=<email>), if set."""
    base = (os.environ.get("NOTIFY_EMAIL_URL") or "").strip()
    if not base:
        return None
    return f"{base}{'&' if '?' in base else '?'}to={quote(email, safe='@')}"


def max_attempts() -> int:
    try:
        return max(1, int(os.environ.get("NOTIFY_MAX_ATTEMPTS", "5")))
    except ValueError:
        return 5


def backoff(attempts: int) -> timedelta:
    """Wait before the next try after `attempts` failures: 1, 2, 4, ... minutes, at most an hour."""
    return timedelta(minutes=min(60, 2 ** max(0, attempts - 1)))


def preferences(m: TeamMember) -> tuple[str, str]:
    """(how often, scope) for a member: their choice, else their role's default."""
    d, s = ROLE_DEFAULTS.get(m.role, ("weekly", "mine"))
    return (m.digest if m.digest in DIGESTS else d, m.digest_scope if m.digest_scope in SCOPES else s)


def masked(url: str) -> str:
    """A destination URL with its secrets hidden (apprise's privacy mode), for logs and pages."""
    import apprise

    obj = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if obj is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://… (not a URL apprise knows)"
    return obj.url(privacy=True)[:300]


def _aware(t: datetime) -> datetime:
    """SQLite gives naive UTC back; PostgreSQL aware."""
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)


def target_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


# ----------------------------------------------------------------------------- messages


_MD_SPECIAL = re.compile(r"([\\`*_~<>&\[\]|])")


def md(s: Any) -> str:
    """Data text made safe for Slack/markdown (no formatting, links or mentions from data)."""
    return _MD_SPECIAL.sub(r"\\\1", str(s))


@dataclass
class Section:
    heading: str
    lines: list[tuple[str, str | None]] = field(default_factory=list)  # (text, link)


@dataclass
class Message:
    kind: str
    key: str
    as_of: date
    title: str
    intro: str
    sections: list[Section]
    account_id: int | None = None
    recipient_id: int | None = None

    def text(self) -> str:
        out = [self.title, "", self.intro]
        for s in self.sections:
            out += ["", s.heading]
            out += [f"- {t}" + (f" <{link}>" if link else "") for t, link in s.lines]
        return "\n".join(out).strip() + "\n"

    def html(self) -> str:
        e = html.escape
        parts = [
            '<html><body style="font-family:Arial,Helvetica,sans-serif;color:#1f2937;max-width:640px">',
            f'<h2 style="margin:0 0 8px">{e(self.title)}</h2>',
            f"<p>{e(self.intro)}</p>",
        ]
        for s in self.sections:
            parts.append(f'<h3 style="margin:16px 0 4px">{e(s.heading)}</h3><ul>')
            for t, link in s.lines:
                parts.append(f'<li><a href="{e(link)}">{e(t)}</a></li>' if link else f"<li>{e(t)}</li>")
            parts.append("</ul>")
        parts.append(f'<p style="color:#6b7280;font-size:12px">Onboarding analytics · {e(base_url())}</p>')
        parts.append("</body></html>")
        return "".join(parts)

    def markdown(self) -> str:
        out = [f"*{md(self.title)}*", md(self.intro)]
        for s in self.sections:
            out.append(f"*{md(s.heading)}*")
            out += [f"• <{link}|{md(t)}>" if link else f"• {md(t)}" for t, link in s.lines]
        return "\n".join(out)


def _row(msg: Message) -> dict[str, Any]:
    return {
        "dedupe_key": msg.key[:300],
        "kind": msg.kind,
        "as_of": msg.as_of,
        "account_id": msg.account_id,
        "recipient_id": msg.recipient_id,
        "title": msg.title[:300],
        "text": msg.text(),
        "html": msg.html(),
        "markdown": msg.markdown(),
        "status": "pending",
        "created_at": utcnow(),
    }


def account_link_of(msg: Message) -> str | None:
    """The account link a message carries (its last section's), if any."""
    for sec in reversed(msg.sections):
        for _, link in sec.lines:
            if link:
                return link
    return None


def enqueue_many(session: Session, msgs: list[Message], *, new: bool = False) -> list[Any]:
    """Write messages to the outbox in the caller's transaction (one bulk insert), except
    those whose dedupe key exists already (a re-run sends nothing twice). new: the caller
    knows the keys are new (plays just opened), no lookup. Returns what was written (id,
    kind, title, recipient_id, ...)."""
    from types import SimpleNamespace

    if not new and msgs:
        keys = sorted({m.key[:300] for m in msgs})
        have: set[str] = set()
        for i in range(0, len(keys), 500):
            have.update(
                session.execute(
                    select(Notification.dedupe_key).where(Notification.dedupe_key.in_(keys[i : i + 500]))
                ).scalars()
            )
        msgs = [m for m in msgs if m.key[:300] not in have]
    rows = list({r["dedupe_key"]: r for r in map(_row, msgs)}.values())
    if not rows:
        return []
    table = Notification.__table__
    ids = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars().all()
    return [SimpleNamespace(id=i, **r) for i, r in zip(ids, rows, strict=True)]


def enqueue(session: Session, msg: Message, *, new: bool = False) -> Any | None:
    """One message (see enqueue_many); None when its dedupe key exists already."""
    got = enqueue_many(session, [msg], new=new)
    return got[0] if got else None


def play_opened(play: Play, tasks: list[PlayTask], account: Account, owners: dict[int, str]) -> Message:
    """The alert for a play just opened, addressed to its first step's owner."""
    link = account_link(account.external_id)
    steps = [
        (f"{t.title} ({t.deliver}) · {owners.get(t.owner_id, 'Unassigned')} · due {t.due:%d %b %Y}", None)
        for t in tasks
    ]
    return Message(
        kind="play_opened",
        key=f"play_opened:{play.id}",
        as_of=play.opened_on,
        title=f"Play opened: {play.playbook_name} on {account.name}",
        intro=f"{account.name} ({account.external_id}): {play.reason}",
        sections=[Section("What to do", steps), Section("Account", [(f"Open {account.name}", link)])],
        account_id=account.id,
        recipient_id=tasks[0].owner_id if tasks else None,
    )


# ----------------------------------------------------------------------------- what is due to be said


def overdue_alerts(session: Session, *, as_of: date) -> list[Message]:
    """A task overdue: once per task (then it is in its owner's digests)."""
    rows = session.execute(
        select(PlayTask, Play.playbook_name, Play.reason, Account, TeamMember.name)
        .join(Play, Play.id == PlayTask.play_id)
        .join(Account, Account.id == PlayTask.account_id)
        .join(TeamMember, TeamMember.id == PlayTask.owner_id, isouter=True)
        .where(
            PlayTask.status == "open",
            PlayTask.due < as_of,
            (PlayTask.snoozed_until.is_(None)) | (PlayTask.snoozed_until <= as_of),
        )
        .order_by(PlayTask.due, PlayTask.id)
    ).all()
    sent = set(session.execute(select(Notification.dedupe_key).where(Notification.kind == "task_overdue")).scalars())
    out = []
    for t, pb, reason, acc, owner in rows:
        key = f"task_overdue:{t.id}"
        if key in sent:
            continue
        days = (as_of - t.due).days
        out.append(
            Message(
                kind="task_overdue",
                key=key,
                as_of=as_of,
                title=f"Task overdue: {t.title} ({acc.name})",
                intro=f"Due {t.due:%d %b %Y}, {days} day{'s' if days != 1 else ''} ago, owned by {owner or 'no one'}: "
                f"step {t.step} of the {pb} play on {acc.name} ({acc.external_id}). Why the play opened: {reason}",
                sections=[
                    Section("What to do", [(f"{t.title} ({t.deliver})", None)]),
                    Section("Account", [(f"Open {acc.name}", account_link(acc.external_id))]),
                ],
                account_id=acc.id,
                recipient_id=t.owner_id,
            )
        )
    return out


def band_drops(health: Any, previous: dict[int, str], accounts: Any, *, as_of: date, since: date) -> list[Message]:
    """An account dropping a band since the last stored snapshot (`previous`: account -> band)."""
    from metrics.health import BANDS

    rank = {b: i for i, b in enumerate(BANDS)}
    info = accounts.set_index("account_id")
    out = []
    for a, band, total, status in zip(
        health["account_id"], health["band"], health["total"], health["status"], strict=True
    ):
        a = int(a)
        before = previous.get(a)
        if status == "churned" or before is None or str(band) not in rank or before not in rank:
            continue
        if rank[str(band)] <= rank[before]:
            continue
        row = info.loc[a]
        out.append(
            Message(
                kind="band_dropped",
                key=f"band_dropped:{a}:{band}:{as_of.isoformat()}",
                as_of=as_of,
                title=f"{row['name']} dropped to {band}",
                intro=f"{row['name']} ({row['external_id']}) went from {before} on {since:%d %b %Y} to {band} "
                f"(health {total:.0f}) as of {as_of:%d %b %Y}. CSM: {row.get('csm_name') or 'none'}.",
                sections=[
                    Section("What to do", [("Open the health breakdown and act on the weakest component", None)]),
                    Section("Account", [(f"Open {row['name']}", account_link(row["external_id"]))]),
                ],
                account_id=a,
                recipient_id=None
                if row.get("csm_id") is None or row.get("csm_id") != row.get("csm_id")
                else int(row["csm_id"]),
            )
        )
    return out


def kpi_alerts(p: Any, ranges: dict[str, Any], *, as_of: date) -> list[Message]:
    """KPIs out of their expected range, from the Portfolio's own figures (once per ISO week)."""
    week = f"{as_of.isocalendar().year}-W{as_of.isocalendar().week:02d}"
    k = {x.key: x for x in p.kpis}
    link = [("Open the Portfolio", f"{base_url()}/?as_of={as_of.isoformat()}")]
    out = []
    c = k.get("completion")
    lo = float(ranges.get("completion_min", 0.85))
    if c is not None and c.denominator and c.value < lo:
        out.append(
            Message(
                "kpi",
                f"kpi:completion:{week}",
                as_of,
                f"Onboarding completion {c.value:.0%}, under its {lo:.0%} target",
                f"{c.numerator:,} of {c.denominator:,} recent onboarding deadlines were met as of {as_of:%d %b %Y}.",
                [
                    Section("What to do", [("Look at the accounts past their deadline by CSM and segment", None)]),
                    Section("Portfolio", link),
                ],
            )
        )
    r = k.get("at_risk")
    pts = float(ranges.get("at_risk_rise_points", 5))
    if r is not None and r.denominator and r.previous == r.previous and (r.value - r.previous) * 100 > pts:
        out.append(
            Message(
                "kpi",
                f"kpi:at_risk:{week}",
                as_of,
                f"Share at risk up {(r.value - r.previous) * 100:.0f} points on last week",
                f"{r.numerator:,} of {r.denominator:,} live accounts ({r.value:.0%}) are at risk or critical, "
                f"from {r.previous:.0%} a week earlier (alert above {pts:.0f} points).",
                [
                    Section("What to do", [("Work the attention list, newest triggers first", None)]),
                    Section("Portfolio", link),
                ],
            )
        )
    over = float(ranges.get("ttfv_over_target_days", 0))
    seg = p.by_segment
    if len(seg) and {"ttfv_median_days", "ttfv_target_days"} <= set(seg.columns):
        for _, row in seg.iterrows():
            m, t = row["ttfv_median_days"], row["ttfv_target_days"]
            if m == m and t == t and m - t > over:
                out.append(
                    Message(
                        "kpi",
                        f"kpi:ttfv:{row['segment']}:{week}",
                        as_of,
                        f"{row['segment']}: time to first value {m:.0f} days, over its {t:.0f}-day target",
                        f"Median days from contract start to first value in {row['segment']} is {m:.0f} "
                        f"(target {t:.0f}) as of {as_of:%d %b %Y}.",
                        [
                            Section(
                                "What to do",
                                [("Review the segment's onboarding playbook and first-value blockers", None)],
                            ),
                            Section("Portfolio", link),
                        ],
                    )
                )
    return out


def digest_due(how: str, as_of: date) -> str | None:
    """The digest period key for this date, or None when no digest is due (weekly: Mondays)."""
    if how == "daily":
        return as_of.isoformat()
    if how == "weekly" and as_of.weekday() == 0:
        return f"{as_of.isocalendar().year}-W{as_of.isocalendar().week:02d}"
    return None


def digests(
    session: Session,
    *,
    as_of: date,
    drops: list[Message],
    summary: list[str],
    attention: Any,
    members: Iterable[TeamMember],
) -> list[Message]:
    """Each member's digest that is due today: their overdue and due tasks, new plays and
    band drops (CSM), or the Portfolio's summary and the top accounts needing attention."""
    from services.plays import tasks as task_table

    my_work = f"{base_url()}/my-work"
    out = []
    for m in members:
        if not m.active or m.role == "revops":
            continue
        how, scope = preferences(m)
        period = digest_due(how, as_of)
        if period is None:
            continue
        days = 7 if how == "weekly" else 1
        since = as_of - timedelta(days=days)
        mine_accounts = set(session.execute(select(Account.id).where(Account.csm_id == m.id)).scalars())
        t = task_table(session, today=as_of, owner_ids=None if scope == "all" else [m.id])
        if scope == "mine":
            t = t[(t["owner_id"] == m.id) | t["account_id"].isin(mine_accounts)] if len(t) else t
        overdue = t[t["bucket"] == "overdue"] if len(t) else t
        due = t[t["bucket"].isin(["today", "this week"])] if len(t) else t
        q = (
            select(Play, Account)
            .join(Account, Account.id == Play.account_id)
            .where(Play.opened_on > since, Play.opened_on <= as_of)
        )
        if scope == "mine":
            q = q.where(Account.csm_id == m.id)
        n_new = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        new_plays = session.execute(q.order_by(Play.opened_on.desc(), Play.id.desc()).limit(SHOWN)).all()
        dropped = [d for d in drops if scope == "all" or d.account_id in mine_accounts]

        def more(n: int) -> list[tuple[str, str | None]]:
            return [(f"… and {n - SHOWN:,} more on My work", my_work)] if n > SHOWN else []

        def task_lines(df) -> list[tuple[str, str | None]]:
            return [
                (f"{r.account} · {r.title} · due {r.due:%d %b}", account_link(r.external_id))
                for r in df.head(SHOWN).itertuples()
            ]

        sections = []
        if m.role == "csm" or scope == "mine":
            sections += [
                Section(f"Overdue tasks ({len(overdue):,})", task_lines(overdue) + more(len(overdue))),
                Section(f"Due this week ({len(due):,})", task_lines(due) + more(len(due))),
                Section(
                    f"New plays ({n_new:,})",
                    [(f"{a.name} · {p.playbook_name}: {p.reason}", account_link(a.external_id)) for p, a in new_plays]
                    + more(n_new),
                ),
                Section(
                    f"Dropped a band ({len(dropped):,})",
                    [(d.title, account_link_of(d)) for d in dropped[:SHOWN]] + more(len(dropped)),
                ),
            ]
            intro = (
                f"{len(overdue):,} overdue and {len(due):,} due this week; {n_new:,} new plays and "
                f"{len(dropped):,} band drops since {since:%d %b}."
            )
        else:
            top = attention.head(10) if attention is not None else []
            sections += [
                Section("What changed", [(s, None) for s in summary]),
                Section(
                    "Top accounts needing attention",
                    [
                        (
                            f"{r.name} · {r.band} · health {r.health:.0f} · {r.reason}",
                            account_link(r.external_id),
                        )
                        for r in (top.itertuples() if len(top) else [])
                    ],
                ),
                Section(f"Overdue tasks in the team ({len(overdue):,})", task_lines(overdue) + more(len(overdue))),
            ]
            intro = f"The portfolio as of {as_of:%d %b %Y}."
        sections = [s for s in sections if s.lines or s.heading.startswith(("Overdue", "Due"))]
        out.append(
            Message(
                kind="digest",
                key=f"digest:{m.id}:{period}",
                as_of=as_of,
                title=f"{'Daily' if how == 'daily' else 'Weekly'} digest for {m.name}, {as_of:%d %b %Y}",
                intro=intro,
                sections=sections,
                recipient_id=m.id,
            )
        )
    return out


# ----------------------------------------------------------------------------- delivery


def _destinations(session: Session) -> list[tuple[str, list[str]]]:
    """(URL, kinds) of the enabled stored destinations."""
    return [
        (d.url, json.loads(d.kinds or "[]"))
        for d in session.execute(select(Destination).where(Destination.enabled.is_(True))).scalars()
    ]


def _targets(
    session: Session, n: Any, members: dict[int, TeamMember], dests: list[tuple[str, list[str]]] | None = None
) -> list[str]:
    urls: list[str] = []
    if n.kind in ALERT_KINDS or n.kind == "test":
        urls += team_urls()
        for url, kinds in _destinations(session) if dests is None else dests:
            if not kinds or n.kind in kinds:
                urls.append(url)
    m = members.get(n.recipient_id) if n.recipient_id is not None else None
    if m is not None and m.active and (n.kind in ("digest", "test") or preferences(m)[0] == "immediate"):
        u = email_url(m.email)
        if u:
            urls.append(u)
    return list(dict.fromkeys(urls))


def plan_deliveries(session: Session, *, notification_id: int | None = None) -> tuple[int, int]:
    """Give every pending message a delivery row per destination (once); a message with no
    destination is marked undeliverable, and one that waited longer than MAX_AGE for its
    first destination expires (a destination added later does not get a backlog of old
    news). Returns (deliveries added, messages undeliverable or expired)."""
    members = {m.id: m for m in session.execute(select(TeamMember)).scalars()}
    added = nowhere = 0
    q = select(Notification).where(Notification.status == "pending")
    if notification_id is not None:
        q = q.where(Notification.id == notification_id)
    pending = session.execute(q.order_by(Notification.id)).scalars().all()
    too_old = utcnow() - MAX_AGE
    have = {
        (nid, k)
        for nid, k in session.execute(
            select(Delivery.notification_id, Delivery.target_key)
            .join(Notification, Notification.id == Delivery.notification_id)
            .where(Notification.status == "pending")
        ).all()
    }
    planned = {nid for nid, _ in have}
    dests = _destinations(session)
    for n in pending:
        if n.id not in planned and _aware(n.created_at) < too_old:
            n.status = "expired"
            nowhere += 1
            continue
        urls = _targets(session, n, members, dests)
        if not urls and n.id not in planned:
            n.status = "undeliverable"
            nowhere += 1
            continue
        for u in urls:
            k = target_key(u)
            if (n.id, k) in have:
                continue
            session.add(Delivery(notification_id=n.id, target_key=k, target=masked(u)))
            have.add((n.id, k))
            added += 1
    session.flush()
    return added, nowhere


def with_blocks(url: str) -> str:
    """A Slack URL that sends Block Kit blocks (apprise's Slack plugin sends the legacy
    attachment payload unless blocks=yes)."""
    if url.split("://", 1)[0].lower() != "slack" or "blocks=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}blocks=yes"


def _send(url: str, n: Notification) -> tuple[bool, str]:
    import apprise

    url = with_blocks(url)
    a = apprise.Apprise()
    if not a.add(url):
        return False, "not an apprise URL this app can use (check its scheme and parts)"
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("mailto", "mailtos"):
        body, fmt = n.html, apprise.NotifyFormat.HTML
    elif scheme in ("slack",):
        body, fmt = n.markdown, apprise.NotifyFormat.MARKDOWN
    else:
        body, fmt = n.text, apprise.NotifyFormat.TEXT
    with apprise.LogCapture(level=apprise.logging.WARNING) as logs:
        ok = a.notify(body=body, title=n.title, body_format=fmt)
    return bool(ok), "" if ok else (logs.getvalue().strip() or "the destination refused the message")[-2000:]


@dataclass
class DeliveryRun:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    undeliverable: int = 0  # messages with no destination configured


def deliver(session: Session, *, now: datetime | None = None, notification_id: int | None = None) -> DeliveryRun:
    """Send every delivery that is due (pending, its next attempt reached), each committed as
    soon as it is sent or failed. The URL is rebuilt from the configuration (the table keeps
    it masked); a destination removed since is failed."""
    now = now or utcnow()
    members = {m.id: m for m in session.execute(select(TeamMember)).scalars()}
    run = DeliveryRun()
    due = session.execute(
        select(Delivery, Notification)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .where(true() if notification_id is None else Delivery.notification_id == notification_id)
        .order_by(Delivery.id)
    ).all()
    urls_by_msg: dict[int, dict[str, str]] = {}
    dests = _destinations(session)
    stale = now - timedelta(minutes=CLAIM_MINUTES)
    # A delivery claimed by a run that died mid-send goes back in the queue (at least once).
    session.execute(
        update(Delivery).where(Delivery.status == "sending", Delivery.next_attempt_at < stale).values(status="pending")
    )
    session.commit()
    for d, n in due:
        # Claim it (compare and set): two runs at once never both send the same delivery.
        claimed = session.execute(
            update(Delivery)
            .where(Delivery.id == d.id, Delivery.status == "pending")
            .values(status="sending", next_attempt_at=now)
        ).rowcount
        session.commit()
        if claimed != 1:
            continue
        session.refresh(d)
        if n.id not in urls_by_msg:
            urls_by_msg[n.id] = {target_key(u): u for u in _targets(session, n, members, dests)}
        url = urls_by_msg[n.id].get(d.target_key)
        if url is None:
            ok, err = False, "this destination is no longer configured"
            d.attempts = max_attempts() - 1
        else:
            ok, err = _send(url, n)
        d.attempts += 1
        if ok:
            d.status, d.sent_at, d.last_error = "sent", utcnow(), ""
            run.sent += 1
        elif d.attempts >= max_attempts():
            d.status, d.last_error = "failed", err
            run.failed += 1
        else:
            d.status, d.next_attempt_at, d.last_error = "pending", now + backoff(d.attempts), err
            run.retrying += 1
        session.commit()
    _settle(session)
    return run


def _settle(session: Session) -> None:
    """A message whose deliveries are all done gets its final status."""
    rows = session.execute(
        select(Delivery.notification_id, Delivery.status, func.count())
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.status == "pending")
        .group_by(Delivery.notification_id, Delivery.status)
    ).all()
    by: dict[int, dict[str, int]] = {}
    for nid, st, c in rows:
        by.setdefault(nid, {})[st] = c
    for nid, c in by.items():
        if c.get("pending"):
            continue
        n = session.get(Notification, nid)
        n.status = "sent" if not c.get("failed") else ("failed" if not c.get("sent") else "partly sent")
    session.commit()


def delivery_log(session: Session, *, limit: int = 200) -> list[dict[str, Any]]:
    """The newest deliveries: who (destination, masked), what, when, status, error."""
    rows = session.execute(
        select(Delivery, Notification)
        .join(Notification, Notification.id == Delivery.notification_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "when": d.sent_at or d.next_attempt_at,
            "to": d.target,
            "what": n.title,
            "kind": n.kind,
            "status": d.status,
            "attempts": d.attempts,
            "error": d.last_error,
        }
        for d, n in rows
    ]


# ----------------------------------------------------------------------------- one run


@dataclass
class NotifyRun:
    as_of: date
    produced: dict[str, int] = field(default_factory=dict)
    plays_opened: int = 0
    plays_auto_resolved: int = 0
    deliveries: DeliveryRun = field(default_factory=DeliveryRun)
    planned: list[tuple[str, str, list[str]]] = field(default_factory=list)  # dry run: (kind, title, destinations)

    @property
    def messages(self) -> int:
        return sum(self.produced.values())


def previous_bands(session: Session, as_of: date) -> tuple[date | None, dict[int, str]]:
    """The bands of the last stored health snapshot before the date (what a drop is measured from)."""
    from db.models import HealthSnapshot

    last = session.execute(select(func.max(HealthSnapshot.date)).where(HealthSnapshot.date < as_of)).scalar_one()
    if last is None:
        return None, {}
    rows = session.execute(
        select(HealthSnapshot.account_id, HealthSnapshot.band).where(HealthSnapshot.date == last)
    ).all()
    return last, {int(a): str(b) for a, b in rows}


def run_notify(*, url: str | None = None, as_of: date, dry_run: bool = False, now: datetime | None = None) -> NotifyRun:
    """Evaluate triggers and KPI ranges as of a date, open and close plays, write what is to
    be said to the outbox, then deliver what is due. With dry_run nothing is stored or sent:
    the run says what would be."""
    from db.session import session_scope
    from db.settings_store import get_setting
    from services.analytics import Facts, portfolio
    from services.health import store_snapshot

    src = Facts(url)
    run = NotifyRun(as_of=as_of)
    with session_scope(url) as s:
        since, before = previous_bands(s, as_of)
        plays = store_snapshot(s, src, as_of=as_of)
        run.plays_opened, run.plays_auto_resolved = len(plays.opened), len(plays.auto_resolved)
        health = src_health(src, as_of)
        msgs: list[Message] = []
        drops = band_drops(health, before, src.accounts(), as_of=as_of, since=since) if since else []
        msgs += drops
        msgs += overdue_alerts(s, as_of=as_of)
        p = portfolio(src, as_of=as_of)
        msgs += kpi_alerts(p, get_setting(s, "alerts").value, as_of=as_of)
        members = list(s.execute(select(TeamMember).order_by(TeamMember.id)).scalars())
        msgs += digests(s, as_of=as_of, drops=drops, summary=p.summary, attention=p.at_risk, members=members)
        created = list(plays.notifications)
        created += enqueue_many(s, msgs)
        s.flush()
        for n in created:
            run.produced[n.kind] = run.produced.get(n.kind, 0) + 1
        if dry_run:
            by_id = {m.id: m for m in members}
            dests = _destinations(s)
            for n in created:
                run.planned.append((n.kind, n.title, [masked(u) for u in _targets(s, n, by_id, dests)]))
            s.rollback()
            return run
        s.commit()
        _, nowhere = plan_deliveries(s)
        s.commit()
        run.deliveries = deliver(s, now=now)
        run.deliveries.undeliverable = nowhere
    return run


def src_health(src: Any, as_of: date) -> Any:
    from services.analytics import health_table

    return health_table(src, as_of=as_of)


# ----------------------------------------------------------------------------- settings: destinations, preferences, a test


def destinations(session: Session) -> list[dict[str, Any]]:
    """The stored destinations with their URLs masked (never shown back in full)."""
    return [
        {
            "id": d.id,
            "name": d.name,
            "destination": masked(d.url),
            "kinds": ", ".join(json.loads(d.kinds or "[]")) or "every alert",
            "enabled": d.enabled,
        }
        for d in session.execute(select(Destination).order_by(Destination.name)).scalars()
    ]


def _problems_url(url: str) -> str | None:
    import apprise

    url = (url or "").strip()
    if not url:
        return "an apprise URL is required (e.g. mailtos://user:pass@smtp.example.com?to=cs@example.com)"
    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        return "not a URL apprise can send to: check its scheme (mailto, slack, msteams, json, ...) and parts"
    return None


def save_destination(
    session: Session, user: Any, *, name: str, apprise_url: str, kinds: list[str] | None = None
) -> int:
    """Add a destination (admins only); the change log names it with its URL masked."""
    from services.access import require_admin
    from services.plans import CellProblem, ValidationFailed

    require_admin(user, "change where alerts go")
    name = (name or "").strip()
    problems = []
    if not name or len(name) > 100:
        problems.append(CellProblem("destination", "name", name, "a name of 1 to 100 characters is required"))
    elif session.execute(select(Destination.id).where(Destination.name == name)).first() is not None:
        problems.append(CellProblem("destination", "name", name, "another destination has this name"))
    if err := _problems_url(apprise_url):
        problems.append(CellProblem("destination", "url", masked(apprise_url) if apprise_url else "", err))
    bad = [k for k in kinds or [] if k not in ALERT_KINDS]
    if bad:
        problems.append(CellProblem("destination", "kinds", bad, f"choose among {', '.join(ALERT_KINDS)}"))
    if problems:
        raise ValidationFailed(problems)
    d = Destination(name=name, url=apprise_url.strip(), kinds=json.dumps(sorted(kinds or [])), created_by=user.email)
    session.add(d)
    session.flush()
    session.add(_setting_log(user, "destination", d.id, "added", None, f"{name}: {masked(d.url)}"))
    session.commit()
    return int(d.id)


def remove_destination(session: Session, user: Any, *, destination_id: int) -> None:
    from services.access import require_admin

    require_admin(user, "change where alerts go")
    d = session.get(Destination, destination_id)
    if d is None:
        raise KeyError(f"no destination with id {destination_id}")
    session.add(_setting_log(user, "destination", d.id, "removed", f"{d.name}: {masked(d.url)}", None))
    session.delete(d)
    session.commit()


def _setting_log(user: Any, entity: str, entity_id: Any, fld: str, old: Any, new: Any):
    from db.models import ChangeLog

    return ChangeLog(
        actor=user.email, entity=entity, entity_id=str(entity_id), field=fld, old=old, new=new, context="settings"
    )


def set_preferences(session: Session, user: Any, *, email: str, digest: str, scope: str) -> None:
    """A member chooses how often and about what they hear (an admin may set anyone's)."""
    from services.access import PermissionDenied
    from services.plans import CellProblem, ValidationFailed

    m = session.execute(select(TeamMember).where(func.lower(TeamMember.email) == email.lower())).scalar_one_or_none()
    if m is None:
        raise KeyError(f"no member with email {email}")
    if not user.is_admin and user.email.lower() != m.email.lower():
        raise PermissionDenied("only the member themselves or an admin can change their notifications")
    problems = []
    if digest not in DIGESTS:
        problems.append(CellProblem(m.email, "digest", digest, f"choose one of {', '.join(DIGESTS)}"))
    if scope not in SCOPES:
        problems.append(CellProblem(m.email, "scope", scope, f"choose one of {', '.join(SCOPES)}"))
    if problems:
        raise ValidationFailed(problems)
    old = preferences(m)
    if old == (digest, scope):
        return
    m.digest, m.digest_scope = digest, scope
    session.add(_setting_log(user, "team_member", m.id, "notifications", f"{old[0]}, {old[1]}", f"{digest}, {scope}"))
    session.commit()


def send_test(session: Session, user: Any) -> DeliveryRun:
    """ "Send a test": one message to every destination (and to the admin's own email), now."""
    from services.access import require_admin

    require_admin(user, "send a test alert")
    me = session.execute(
        select(TeamMember).where(func.lower(TeamMember.email) == user.email.lower())
    ).scalar_one_or_none()
    at = utcnow()
    msg = Message(
        kind="test",
        key=f"test:{at.isoformat()}:{user.email}",
        as_of=at.date(),
        title="Test alert from onboarding analytics",
        intro=f"{user.name} sent this test on {at:%d %b %Y %H:%M} UTC. If you can read it, alerts reach this destination.",
        sections=[Section("Open the app", [("Portfolio", base_url() + "/")])],
        recipient_id=me.id if me else None,
    )
    n = enqueue(session, msg, new=True)
    session.commit()
    plan_deliveries(session, notification_id=n.id)
    session.commit()
    if session.get(Notification, n.id).status == "undeliverable":
        return DeliveryRun(undeliverable=1)
    return deliver(session, notification_id=n.id)
