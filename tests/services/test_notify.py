"""Alerts and digests delivered through apprise (issue 13), against real receivers on
127.0.0.1: an SMTP server (aiosmtpd) and an HTTP server taking apprise's JSON webhook. The
content (account names, reasons, links), dedupe on a re-run, a retry after the receiver was
down, and the failure log."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from db.models import Account, Delivery, Notification, Play, PlayTask, TeamMember, utcnow
from db.session import session_scope
from services.notify import account_link, delivery_log, digest_due, md, run_notify
from tests.conftest import AS_OF
from tests.services import ALEX, LEADER, clear_plays

MONDAY = AS_OF + timedelta(days=(7 - AS_OF.weekday()) % 7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_plays_yet(small_db: str) -> None:
    """The demo portfolio comes with plays; these tests start from none."""
    clear_plays(small_db)


class Smtp:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.port = _free_port()
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=cs-alerts@example.com"

    def to(self, addr: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if addr in str(m["To"])]


class Hook:
    """An HTTP server on 127.0.0.1 that records apprise's JSON webhook posts; it can be down."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.port = _free_port()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/cs-alerts"


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    s = Smtp()
    s.controller.start()
    yield s
    s.controller.stop()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    h.start()
    yield h
    h.stop()


@pytest.fixture
def receivers(monkeypatch, smtp: Smtp, hook: Hook) -> tuple[Smtp, Hook]:
    monkeypatch.setenv("NOTIFY_URLS", hook.url())
    monkeypatch.setenv("NOTIFY_EMAIL_URL", smtp.url())
    monkeypatch.setenv("APP_BASE_URL", "https://cs.example.com")
    monkeypatch.setenv("NOTIFY_MAX_ATTEMPTS", "3")
    return smtp, hook


def _set_pref(url: str, email_: str, digest: str, scope: str | None = None) -> None:
    with session_scope(url) as s:
        s.execute(update(TeamMember).where(TeamMember.email == email_).values(digest=digest, digest_scope=scope))
        s.commit()


def test_a_run_alerts_the_owner_and_the_team_and_a_rerun_sends_nothing(small_db: str, receivers) -> None:
    smtp, hook = receivers
    _set_pref(small_db, ALEX, "immediate")
    run = run_notify(url=small_db, as_of=AS_OF)
    assert run.plays_opened > 0 and run.produced["play_opened"] == run.plays_opened
    assert run.deliveries.failed == 0 and run.deliveries.sent > 0
    with session_scope(small_db) as s:
        alex = s.execute(select(TeamMember).where(TeamMember.email == ALEX)).scalar_one()
        first_tasks = s.execute(
            select(Play, Account)
            .join(Account, Account.id == Play.account_id)
            .join(PlayTask, (PlayTask.play_id == Play.id) & (PlayTask.step == 1))
            .where(PlayTask.owner_id == alex.id)
        ).all()
    assert first_tasks, "Alex owns the first step of some play"
    # Alex (immediate) gets one email per play they own, as HTML with a plain-text part.
    mails = [m for m in smtp.to(ALEX) if str(m["Subject"]).startswith("Play opened")]
    assert len(mails) == len(first_tasks)
    play, acc = first_tasks[0]
    mail = next(m for m in mails if str(m["Subject"]) == f"Play opened: {play.playbook_name} on {acc.name}")
    plain = mail.get_body(("plain",)).get_content()
    html_part = mail.get_body(("html",)).get_content()
    assert play.reason in plain and acc.name in plain
    assert f'href="{account_link(acc.external_id)}"' in html_part
    assert account_link(acc.external_id).startswith("https://cs.example.com/accounts?account=")
    # The team's webhook receives every alert.
    titles = [p["title"] for p in hook.posts]
    assert sum(t.startswith("Play opened") for t in titles) == run.plays_opened
    assert any(acc.name in p["message"] and play.reason in p["message"] for p in hook.posts)
    # The same as-of again: nothing new is produced or sent.
    n_mail, n_posts = len(smtp.messages), len(hook.posts)
    again = run_notify(url=small_db, as_of=AS_OF)
    assert again.messages == 0 and again.deliveries.sent == 0
    assert (len(smtp.messages), len(hook.posts)) == (n_mail, n_posts)


def test_a_receiver_that_was_down_gets_the_message_on_retry_and_then_the_failure_is_logged(
    small_db: str, receivers, hook: Hook
) -> None:
    hook.stop()
    run = run_notify(url=small_db, as_of=AS_OF)
    assert run.deliveries.retrying > 0 and hook.posts == []
    with session_scope(small_db) as s:
        d = s.execute(select(Delivery).where(Delivery.status == "pending").order_by(Delivery.id)).scalars().first()
        assert d.attempts == 1 and d.last_error and "cs-alerts" in d.target
    # Not due yet: nothing is tried again.
    assert run_notify(url=small_db, as_of=AS_OF, now=utcnow()).deliveries.sent == 0
    hook.start()
    later = run_notify(url=small_db, as_of=AS_OF, now=utcnow() + timedelta(minutes=2))
    assert later.deliveries.sent >= run.deliveries.retrying
    assert sum(p["title"].startswith("Play opened") for p in hook.posts) == run.plays_opened
    # Down for good: after NOTIFY_MAX_ATTEMPTS tries the delivery is failed, with its error.
    hook.stop()
    with session_scope(small_db) as s:
        s.execute(update(PlayTask).values(due=AS_OF - timedelta(days=1)))
        s.commit()
    run_notify(url=small_db, as_of=AS_OF)  # overdue alerts, first try fails
    for minutes in (2, 5):
        run_notify(url=small_db, as_of=AS_OF, now=utcnow() + timedelta(minutes=minutes))
    with session_scope(small_db) as s:
        log = delivery_log(s)
    failed = [r for r in log if r["status"] == "failed"]
    assert failed and all(r["attempts"] == 3 and r["error"] for r in failed)
    assert {r["kind"] for r in failed} == {"task_overdue"}
    assert all("127.0.0.1" in r["to"] for r in failed)


def test_overdue_task_alert_once_and_digests_by_preference(small_db: str, receivers) -> None:
    smtp, hook = receivers
    run_notify(url=small_db, as_of=AS_OF)
    # A CSM's default is a daily digest about their accounts.
    assert [str(m["Subject"]) for m in smtp.to(ALEX)] == [f"Daily digest for Alex Moreno, {AS_OF:%d %b %Y}"]
    smtp.messages.clear()
    with session_scope(small_db) as s:
        s.execute(update(PlayTask).values(due=AS_OF - timedelta(days=2)))
        s.commit()
    _set_pref(small_db, ALEX, "daily", "mine")
    _set_pref(small_db, LEADER, "weekly", "all")
    day = AS_OF + timedelta(days=1)
    run = run_notify(url=small_db, as_of=day)
    assert run.produced.get("task_overdue", 0) > 0
    # Alex chose a daily digest: no single alert mails, one digest listing the overdue tasks.
    alex_mail = smtp.to(ALEX)
    assert [str(m["Subject"]) for m in alex_mail] == [f"Daily digest for Alex Moreno, {day:%d %b %Y}"]
    body = alex_mail[0].get_body(("plain",)).get_content()
    assert "Overdue tasks (" in body and "due " in body
    with session_scope(small_db) as s:
        alex = s.execute(select(TeamMember).where(TeamMember.email == ALEX)).scalar_one()
        mine = s.execute(
            select(PlayTask.title, Account.name)
            .join(Account, Account.id == PlayTask.account_id)
            .where(PlayTask.owner_id == alex.id, PlayTask.status == "open")
        ).all()
    assert mine and all(name in body for _, name in mine[:5])
    # Overdue alerts went to the team channel once; a re-run the next day does not repeat them.
    n = sum(p["title"].startswith("Task overdue") for p in hook.posts)
    assert n == run.produced["task_overdue"]
    run_notify(url=small_db, as_of=day + timedelta(days=1))
    assert sum(p["title"].startswith("Task overdue") for p in hook.posts) == n
    # The leader's weekly digest comes on Monday: the Portfolio's summary and top accounts.
    run_notify(url=small_db, as_of=MONDAY if day + timedelta(days=1) < MONDAY else MONDAY + timedelta(days=7))
    leader_mail = [m for m in smtp.to(LEADER) if "Weekly digest" in str(m["Subject"])]
    assert len(leader_mail) == 1
    lb = leader_mail[0].get_body(("plain",)).get_content()
    assert "What changed" in lb and "Top accounts needing attention" in lb
    assert digest_due("weekly", MONDAY) and not digest_due("weekly", MONDAY + timedelta(days=1))


def test_dry_run_stores_and_sends_nothing(small_db: str, receivers) -> None:
    smtp, hook = receivers
    run = run_notify(url=small_db, as_of=AS_OF, dry_run=True)
    assert run.planned and any(k == "play_opened" for k, _, _ in run.planned)
    assert all(dests for k, _, dests in run.planned if k != "digest")
    with session_scope(small_db) as s:
        assert s.execute(select(Notification)).first() is None
        assert s.execute(select(Play)).first() is None
    assert smtp.messages == [] and hook.posts == []


def test_data_text_is_escaped_in_every_format(small_db: str, receivers) -> None:
    smtp, _hook = receivers
    evil = "<img src=x onerror=alert(1)> *bold* [x](http://evil)"
    with session_scope(small_db) as s:
        s.execute(update(Account).values(name=evil))
        s.commit()
    _set_pref(small_db, ALEX, "immediate")
    run_notify(url=small_db, as_of=AS_OF)
    with session_scope(small_db) as s:
        n = s.execute(select(Notification).where(Notification.kind == "play_opened")).scalars().first()
    assert "<img" not in n.html and "&lt;img src=x onerror=alert(1)&gt;" in n.html
    assert md(evil) in n.markdown and "*bold*" not in n.markdown
    mail = next(m for m in smtp.messages if "Play opened" in str(m["Subject"]))
    assert "<img" not in mail.get_body(("html",)).get_content()


def test_old_news_expires_instead_of_flooding_a_new_destination(small_db: str, receivers) -> None:
    _smtp, hook = receivers
    with session_scope(small_db) as s:
        s.add(
            Notification(
                dedupe_key="kpi:old",
                kind="kpi",
                as_of=AS_OF - timedelta(days=5),
                title="Old news",
                text="t",
                html="h",
                markdown="m",
                created_at=utcnow() - timedelta(days=3),
            )
        )
        s.commit()
    run_notify(url=small_db, as_of=AS_OF)
    with session_scope(small_db) as s:
        assert (
            s.execute(select(Notification.status).where(Notification.dedupe_key == "kpi:old")).scalar_one() == "expired"
        )
    assert "Old news" not in [p["title"] for p in hook.posts]


def test_slack_gets_block_kit_blocks(small_db: str, monkeypatch) -> None:
    """Slack is not reachable here: apprise's own Slack plugin builds the payload, captured
    where it would be posted. Our URL asks it for Block Kit blocks, with data text escaped."""
    import apprise
    from apprise.plugins.slack import NotifySlack

    from services.notify import Message, Section, with_blocks

    url = with_blocks("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#cs")
    assert url.endswith("?blocks=yes") and with_blocks(url) == url
    sent: list[dict] = []
    monkeypatch.setattr(NotifySlack, "_send", lambda self, u, payload, **kw: sent.append(payload) or {"ok": True})
    msg = Message("kpi", "k", AS_OF, "Share at risk up", "ACME *Corp* <b>", [Section("What to do", [("Act", None)])])
    a = apprise.Apprise()
    assert a.add(url)
    assert a.notify(body=msg.markdown(), title=msg.title, body_format=apprise.NotifyFormat.MARKDOWN)
    (payload,) = sent
    blocks = [b for att in payload.get("attachments", []) for b in att.get("blocks", [])]
    assert blocks and {b["type"] for b in blocks} >= {"header"}, payload
    text = json.dumps(blocks)
    assert "Share at risk up" in text and "Corp" in text and "<b>" not in text, text
