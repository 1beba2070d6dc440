"""Deterministic demo portfolio generator (one module for first start, tests and benchmark).

`generate(accounts=600, seed=42, as_of=today)` returns the portfolio as DataFrames in the
import contract's format (PRODUCT.md §3) plus success plans; `load(session, demo)` writes
it through the same bulk writers the importer uses. At scale, `generate_chunks` yields the
portfolio `CHUNK_ACCOUNTS` accounts at a time (each chunk the same model, from its own
seeded stream) and `load_chunks` writes them one by one, so no more than one chunk's rows
are ever held. A portfolio of at most one chunk (the default demo, the tests' data) is
exactly what `generate` gives.

The model behind it, so every analysis shows something true:
- onboarding length follows the segment targets (SMB ~14-30 days ... Strategic 90-120);
- early behaviours in the first 14 days (integration connected, users invited, training
  attended) raise an account's engagement, which shortens onboarding and raises the
  chance of completing it, renewing at the first anniversary and expanding;
- some accounts stall at a milestone; the youngest are still onboarding;
- churned accounts fade out before they leave; one CSM's book runs a little weaker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from db.defaults import DEFAULT_CHECKLIST, DEFAULT_MILESTONES

SEGMENT_P = {"SMB": 0.45, "Mid-Market": 0.30, "Enterprise": 0.18, "Strategic": 0.07}
SEG_COMPLEXITY = {"SMB": 0.0, "Mid-Market": 0.3, "Enterprise": 0.7, "Strategic": 0.9}
SEG_SEATS = {"SMB": (4, 12), "Mid-Market": (8, 24), "Enterprise": (16, 45), "Strategic": (30, 80)}
SEG_ARR = {"SMB": (9.6, 0.4), "Mid-Market": (10.8, 0.35), "Enterprise": (11.9, 0.3), "Strategic": (12.9, 0.3)}
SEG_EMPLOYEES = {"SMB": (4.0, 0.6), "Mid-Market": (6.0, 0.4), "Enterprise": (7.6, 0.4), "Strategic": (9.5, 0.5)}
SEG_PLANS = {
    "SMB": (["Starter", "Growth"], [0.6, 0.4]),
    "Mid-Market": (["Growth", "Business"], [0.5, 0.5]),
    "Enterprise": (["Business", "Enterprise"], [0.4, 0.6]),
    "Strategic": (["Enterprise"], [1.0]),
}
SEG_CHANNELS = {
    "SMB": [0.65, 0.2, 0.15],
    "Mid-Market": [0.2, 0.6, 0.2],
    "Enterprise": [0.0, 0.8, 0.2],
    "Strategic": [0.0, 0.9, 0.1],
}
CHANNELS = ["self-serve", "sales", "partner"]
INDUSTRIES = ["Software", "Financial services", "Healthcare", "Retail", "Manufacturing", "Education", "Media"]
REGIONS = ["North America", "EMEA", "APAC", "LATAM"]
REGION_P = [0.45, 0.3, 0.17, 0.08]

PRODUCT_EVENTS = [
    "login",
    "dashboard_viewed",
    "report_viewed",
    "search_performed",
    "export_downloaded",
    "comment_added",
    "alert_configured",
    "api_call",
]
PRODUCT_P = [0.33, 0.25, 0.16, 0.1, 0.06, 0.05, 0.03, 0.02]

TEAM = [
    ("dana.leader@example.com", "Dana Whitfield", "leader"),
    ("alex.csm@example.com", "Alex Moreno", "csm"),
    ("priya.csm@example.com", "Priya Raman", "csm"),
    ("sam.csm@example.com", "Sam Okafor", "csm"),
    ("jordan.csm@example.com", "Jordan Blake", "csm"),
    ("mei.csm@example.com", "Mei Tanaka", "csm"),
    ("luca.csm@example.com", "Luca Romano", "csm"),
    ("riley.revops@example.com", "Riley Chen", "revops"),
    ("admin@example.com", "Morgan Admin", "admin"),
]
# A small per-CSM effect so the by-CSM breakdown shows something (Sam's book runs weaker).
CSM_EFFECT = {
    "alex.csm@example.com": 0.15,
    "priya.csm@example.com": 0.1,
    "sam.csm@example.com": -0.35,
    "jordan.csm@example.com": 0.0,
    "mei.csm@example.com": 0.05,
    "luca.csm@example.com": -0.05,
}

_ADJ = [
    "Blue",
    "North",
    "Bright",
    "Silver",
    "Red",
    "Green",
    "Swift",
    "Clear",
    "Quiet",
    "Bold",
    "Prime",
    "True",
    "Summit",
    "Harbor",
    "Iron",
    "Golden",
    "Cedar",
    "Maple",
    "Coral",
    "Polar",
    "Lunar",
    "Solar",
    "Amber",
    "Crimson",
    "Rapid",
    "Noble",
    "Vivid",
    "Urban",
    "Alpine",
    "Coastal",
]
_NOUN = [
    "Harbor",
    "Ridge",
    "River",
    "Peak",
    "Field",
    "Stone",
    "Bridge",
    "Forge",
    "Grove",
    "Lake",
    "Point",
    "Crest",
    "Valley",
    "Beacon",
    "Anchor",
    "Falcon",
    "Otter",
    "Heron",
    "Fox",
    "Pine",
    "Oak",
    "Wave",
    "Spark",
    "Orbit",
    "Vertex",
    "Signal",
    "Vector",
    "Atlas",
    "Delta",
    "Canyon",
]
_SUFFIX = ["Analytics", "Health", "Logistics", "Labs", "Systems", "Retail", "Capital", "Media", "Works", "Group"]
_FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Marco",
    "Nora",
    "Omar",
    "Paula",
    "Quinn",
    "Rosa",
    "Theo",
    "Uma",
    "Vera",
    "Wes",
    "Yara",
    "Zane",
]
_LAST = [
    "Adams",
    "Brooks",
    "Cruz",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Meyer",
    "Nakamura",
    "Olsen",
    "Patel",
    "Reyes",
    "Singh",
    "Torres",
    "Vogel",
]

GOALS = {
    "Software": "Replace spreadsheet reporting for product and engineering leads",
    "Financial services": "Consolidate risk and revenue reporting into governed dashboards",
    "Healthcare": "Give clinic managers a weekly operational view without analyst help",
    "Retail": "Track store and e-commerce performance daily in one place",
    "Manufacturing": "Monitor plant throughput and quality against targets",
    "Education": "Report enrolment and student outcomes to leadership monthly",
    "Media": "Understand audience and campaign performance across channels",
}

MILESTONE_KEYS = [m["key"] for m in DEFAULT_MILESTONES]


@dataclass
class DemoData:
    team: pd.DataFrame
    accounts: pd.DataFrame
    milestones: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame
    checklist: pd.DataFrame
    success_plans: pd.DataFrame
    as_of: date
    meta: dict = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _to_ts(base: np.ndarray, day_offsets: np.ndarray) -> np.ndarray:
    """contract_start (datetime64[D]) + fractional days -> datetime64[s]."""
    return base.astype("datetime64[s]") + (day_offsets * 86400).astype("int64").astype("timedelta64[s]")


def default_event_target(accounts: int) -> int:
    """About 200,000 events for the 600-account demo, 100 per account beyond that."""
    return max(200_000, 100 * accounts)


def generate(
    *,
    accounts: int = 600,
    seed: int | Sequence[int] = 42,
    as_of: date | None = None,
    events: int | None = None,
    first_account: int = 0,
) -> DemoData:
    """Generate a demo portfolio, deterministic for a given (accounts, seed, as_of).
    `first_account` numbers the accounts from ACC-(first_account + 1) (one chunk of many)."""
    as_of = as_of or datetime.now(UTC).date()
    target_events = events if events is not None else default_event_target(accounts)
    rng = np.random.default_rng(seed)
    n = accounts
    as_of64 = np.datetime64(as_of, "D")
    # Observation ends at the end of the as-of day.
    horizon_s = as_of64.astype("datetime64[s]") + np.timedelta64(86399, "s")

    # --- accounts -----------------------------------------------------------------
    seg_names = np.array(list(SEGMENT_P))
    segment = rng.choice(seg_names, size=n, p=list(SEGMENT_P.values()))
    # More recent starts are more frequent (a growing business).
    age_days = np.floor(730 * rng.random(n) ** 1.35).astype(int)
    start = as_of64 - age_days.astype("timedelta64[D]")
    industry = rng.choice(INDUSTRIES, size=n)
    region = rng.choice(REGIONS, size=n, p=REGION_P)
    channel = np.empty(n, dtype=object)
    plan = np.empty(n, dtype=object)
    seats = np.zeros(n, dtype=int)
    arr = np.zeros(n)
    employees = np.zeros(n, dtype=int)
    complexity = np.zeros(n)
    for seg in SEGMENT_P:
        m = segment == seg
        k = int(m.sum())
        channel[m] = rng.choice(CHANNELS, size=k, p=SEG_CHANNELS[seg])
        names, p = SEG_PLANS[seg]
        plan[m] = rng.choice(names, size=k, p=p)
        lo, hi = SEG_SEATS[seg]
        seats[m] = rng.integers(lo, hi + 1, size=k)
        mu, sd = SEG_ARR[seg]
        arr[m] = np.round(np.exp(rng.normal(mu, sd, size=k)) / 100) * 100
        mu, sd = SEG_EMPLOYEES[seg]
        employees[m] = np.maximum(5, np.exp(rng.normal(mu, sd, size=k))).astype(int)
        complexity[m] = SEG_COMPLEXITY[seg]

    csm_emails = [e for e, _, r in TEAM if r == "csm"]
    csm = rng.choice(csm_emails, size=n)
    csm_eff = np.array([CSM_EFFECT[c] for c in csm])

    ext_ids = np.array([f"ACC-{first_account + i + 1:05d}" for i in range(n)])
    names = np.array(
        [
            f"{_ADJ[a]} {_NOUN[b]} {_SUFFIX[c]}"
            for a, b, c in zip(
                rng.integers(0, len(_ADJ), n),
                rng.integers(0, len(_NOUN), n),
                rng.integers(0, len(_SUFFIX), n),
                strict=True,
            )
        ]
    )

    # --- latent quality and early behaviours -----------------------------------------
    q = rng.normal(0, 1, n) + csm_eff
    early_integration = rng.random(n) < _sigmoid(0.4 + 0.9 * q - 1.2 * complexity)
    early_invites = rng.random(n) < _sigmoid(0.4 + 0.8 * q - 0.3 * complexity)
    early_training = rng.random(n) < _sigmoid(-0.3 + 0.7 * q + 0.5 * (channel == "sales"))
    n_early = early_integration.astype(int) + early_invites + early_training
    z = 0.55 * q + 0.7 * (n_early - 1.5) + rng.normal(0, 0.35, n)

    # --- milestones -------------------------------------------------------------------
    targets = np.array([[m["target_days"][s] for m in DEFAULT_MILESTONES] for s in segment], dtype=float)
    mult = np.exp(rng.normal(-0.22 - 0.2 * z, 0.2, n))
    noise = np.exp(rng.normal(0, 0.12, (n, len(MILESTONE_KEYS))))
    day_done = targets * mult[:, None] * noise
    day_done[:, 0] = np.maximum(day_done[:, 0], 0.5)
    # Without an early integration (or early training) that milestone waits past day 14.
    day_done[:, 1] = np.where(
        early_integration, np.minimum(day_done[:, 1], 13.5), np.maximum(day_done[:, 1], 14.5 + rng.uniform(0, 10, n))
    )
    day_done[:, 2] = np.where(early_training, day_done[:, 2], np.maximum(day_done[:, 2], 14.5 + rng.uniform(0, 12, n)))
    for j in range(1, day_done.shape[1]):
        day_done[:, j] = np.maximum(day_done[:, j], day_done[:, j - 1] + rng.uniform(0.5, 3, n))
    # Business hours: completions land between 09:00 and 18:00.
    day_done = np.floor(day_done) + rng.uniform(9 / 24, 18 / 24, day_done.shape)
    stalled = rng.random(n) < _sigmoid(-1.7 - 1.1 * z)
    stall_at = np.where(stalled, rng.integers(1, len(MILESTONE_KEYS), n), len(MILESTONE_KEYS))
    # Most stalls are resolved after a while (often after an intervention): the remaining
    # milestones complete late. The rest stay stuck until the account leaves or is rescued.
    resolved = stalled & (rng.random(n) < _sigmoid(0.4 + 0.8 * z))
    delay = rng.uniform(30, 150, n)
    later = np.arange(len(MILESTONE_KEYS))[None, :] >= stall_at[:, None]
    day_done = np.where(resolved[:, None] & later, day_done + delay[:, None], day_done)
    stall_at = np.where(resolved, len(MILESTONE_KEYS), stall_at)
    stalled = stalled & ~resolved

    # --- outcomes ---------------------------------------------------------------------
    concluded_day = np.where(stall_at == len(MILESTONE_KEYS), day_done[:, -1], np.inf)
    churn_day = np.full(n, np.inf)
    # Some stalled accounts terminate early (censors their time to value at churn).
    early_term = stalled & (rng.random(n) < 0.45)
    churn_day = np.where(early_term, rng.uniform(100, 330, n).round(), churn_day)
    p_churn1 = _sigmoid(
        -2.0
        - 0.9 * z
        - 0.5 * early_integration
        + 2.6 * (concluded_day > 365)
        - 0.4 * (segment == "Strategic")
        + 0.3 * (segment == "SMB")
    )
    churn1 = rng.random(n) < p_churn1
    churn_day = np.where(np.isinf(churn_day) & churn1, 365, churn_day)
    p_churn2 = _sigmoid(-2.1 - 0.7 * z)
    churn2 = rng.random(n) < p_churn2
    churn_day = np.where(np.isinf(churn_day) & churn2, 730, churn_day)
    # Only what has happened by as-of is real.
    churn_day = np.where(churn_day <= age_days, churn_day, np.inf)
    end_day = np.minimum(age_days + 0.9999, churn_day)  # last observed (fractional) day

    out_rows: list[tuple] = []
    p_exp1 = _sigmoid(-1.5 + 0.8 * z + 0.6 * early_integration)
    exp1 = rng.random(n) < p_exp1
    exp1_day = rng.uniform(120, 360, n).round()
    exp1_pct = rng.uniform(0.15, 0.6, n)
    exp2 = rng.random(n) < _sigmoid(-1.9 + 0.6 * z)
    exp2_day = rng.uniform(400, 700, n).round()
    contracted = rng.random(n) < _sigmoid(-2.3 - 0.5 * z)
    contr_pct = rng.uniform(0.1, 0.3, n)
    for i in range(n):
        s = start[i]
        cur_arr = arr[i]
        if exp1[i] and exp1_day[i] <= age_days[i] and exp1_day[i] < churn_day[i]:
            delta = round(cur_arr * exp1_pct[i], -2)
            out_rows.append((ext_ids[i], s + int(exp1_day[i]), "expanded", delta))
            cur_arr += delta
        for k, renewal in ((1, 365), (2, 730)):
            if renewal > age_days[i] or renewal > churn_day[i]:
                break
            if churn_day[i] == renewal:
                out_rows.append((ext_ids[i], s + renewal, "churned", -cur_arr))
                break
            out_rows.append((ext_ids[i], s + renewal, "renewed", 0.0))
            if k == 1 and contracted[i]:
                delta = -round(cur_arr * contr_pct[i], -2)
                out_rows.append((ext_ids[i], s + renewal, "contracted", delta))
                cur_arr += delta
            if k == 1 and exp2[i] and exp2_day[i] <= age_days[i] and exp2_day[i] < churn_day[i]:
                delta = round(cur_arr * exp1_pct[i] / 2, -2)
                out_rows.append((ext_ids[i], s + int(exp2_day[i]), "expanded", delta))
                cur_arr += delta
        if early_term[i] and np.isfinite(churn_day[i]) and churn_day[i] < 365:
            out_rows.append((ext_ids[i], s + int(churn_day[i]), "churned", -cur_arr))
    outcomes = pd.DataFrame(out_rows, columns=["account_id", "date", "type", "arr_change"])
    outcomes["date"] = pd.to_datetime(outcomes["date"]).dt.date
    outcomes = outcomes.sort_values(["account_id", "date", "type"]).reset_index(drop=True)

    # Milestones observed by as-of (and before churn), unless stalled before them.
    idx = np.arange(len(MILESTONE_KEYS))
    observed = (idx[None, :] < stall_at[:, None]) & (day_done <= end_day[:, None])
    start_s = start.astype("datetime64[s]")
    done_ts = start_s[:, None] + (day_done * 86400).astype("int64").astype("timedelta64[s]")
    due = start[:, None] + targets.astype(int).astype("timedelta64[D]")
    ms = pd.DataFrame(
        {
            "account_id": np.repeat(ext_ids, len(MILESTONE_KEYS)),
            "milestone": np.tile(MILESTONE_KEYS, n),
            "due_date": pd.to_datetime(due.ravel()).date,
            "completed_at": np.where(observed.ravel(), done_ts.ravel(), np.datetime64("NaT")),
        }
    )
    ms["completed_at"] = pd.to_datetime(ms["completed_at"]).dt.tz_localize("UTC")

    # --- events ---------------------------------------------------------------------
    events = _events(
        rng=rng,
        n=n,
        ext_ids=ext_ids,
        start=start,
        age_days=age_days,
        end_day=end_day,
        churn_day=churn_day,
        seats=seats,
        z=z,
        day_done=day_done,
        observed=observed,
        stall_at=stall_at,
        channel=channel,
        early=(early_integration, early_invites, early_training),
        target_events=target_events,
        horizon=horizon_s,
    )

    team = pd.DataFrame(TEAM, columns=["email", "name", "role"])
    accounts_df = pd.DataFrame(
        {
            "account_id": ext_ids,
            "name": names,
            "segment": segment,
            "contract_start": pd.to_datetime(start).date,
            "industry": industry,
            "employees": employees,
            "plan": plan,
            "channel": channel,
            "region": region,
            "arr": arr,
            "licensed_seats": seats,
            "csm_email": csm,
        }
    )

    champion_day = np.where(rng.random(n) < _sigmoid(2.6 + 0.9 * q), rng.uniform(1, 20, n), np.inf)
    has_champion = champion_day <= age_days
    plans = pd.DataFrame(
        {
            "account_id": ext_ids,
            "goals": [GOALS[i] for i in industry],
            "success_30": "Integrations live and admins trained",
            "success_60": "Weekly active users at 80 % of licensed seats",
            "success_90": "Three decisions informed by dashboards, shared with leadership",
            "champion": [
                f"{_FIRST[a]} {_LAST[b]}" if c else ""
                for a, b, c in zip(
                    rng.integers(0, len(_FIRST), n), rng.integers(0, len(_LAST), n), has_champion, strict=True
                )
            ],
            "admin_contact": [
                f"{_FIRST[a]} {_LAST[b]}"
                for a, b in zip(rng.integers(0, len(_FIRST), n), rng.integers(0, len(_LAST), n), strict=True)
            ],
            "executive_sponsor": [
                f"{_FIRST[a]} {_LAST[b]}" if c else ""
                for a, b, c in zip(
                    rng.integers(0, len(_FIRST), n),
                    rng.integers(0, len(_LAST), n),
                    rng.random(n) < _sigmoid(0.5 + q + complexity),
                    strict=True,
                )
            ],
        }
    )

    checklist = _checklist(
        ext_ids=ext_ids,
        start=start,
        segment=segment,
        csm=csm,
        done_ts=done_ts,
        observed=observed,
        stall_at=stall_at,
        has_champion=has_champion,
        champion_ts=start_s + (np.nan_to_num(champion_day, posinf=0) * 86400).astype("int64").astype("timedelta64[s]"),
        expanded_by=outcomes[outcomes["type"] == "expanded"].groupby("account_id")["date"].min().to_dict(),
        age_days=age_days,
        rng=rng,
    )

    meta = {
        "accounts": n,
        "seed": seed,
        "as_of": as_of.isoformat(),
        "events": len(events),
        "stalled": int(stalled.sum()),
        "churned": int(np.isfinite(churn_day).sum()),
    }
    return DemoData(team, accounts_df, ms, events, outcomes, checklist, plans, as_of, meta)


def _events(
    *,
    rng: np.random.Generator,
    n: int,
    ext_ids: np.ndarray,
    start: np.ndarray,
    age_days: np.ndarray,
    end_day: np.ndarray,
    churn_day: np.ndarray,
    seats: np.ndarray,
    z: np.ndarray,
    day_done: np.ndarray,
    observed: np.ndarray,
    stall_at: np.ndarray,
    channel: np.ndarray,
    early: tuple[np.ndarray, np.ndarray, np.ndarray],
    target_events: int,
    horizon: np.datetime64,
) -> pd.DataFrame:
    """Onboarding actions plus daily product usage, scaled to about target_events."""
    early_integration, early_invites, early_training = early
    start_s = start.astype("datetime64[s]")
    parts: list[pd.DataFrame] = []

    def add(
        acc_idx: np.ndarray, name: str | np.ndarray, day: np.ndarray, user: np.ndarray, props: np.ndarray | None
    ) -> None:
        keep = (day <= end_day[acc_idx]) & (day >= -30)
        acc_idx, day, user = acc_idx[keep], day[keep], user[keep]
        names = name[keep] if isinstance(name, np.ndarray) else np.full(len(acc_idx), name, dtype=object)
        parts.append(
            pd.DataFrame(
                {
                    "acc": acc_idx,
                    "event": names,
                    "ts": start_s[acc_idx] + (day * 86400).astype("int64").astype("timedelta64[s]"),
                    "user": user,
                    "properties": props[keep] if props is not None else None,
                }
            )
        )

    all_idx = np.arange(n)
    ms_day = np.where(observed, day_done, np.inf)
    kickoff, tech, training, first_value = ms_day[:, 0], ms_day[:, 1], ms_day[:, 2], ms_day[:, 3]

    # Workspace created and kickoff held at kickoff.
    has = np.isfinite(kickoff)
    add(all_idx[has], "workspace_created", kickoff[has] - 0.01, np.zeros(has.sum(), int), None)
    add(all_idx[has], "kickoff_meeting_held", kickoff[has], np.zeros(has.sum(), int), None)

    # Integrations: early accounts connect in days 1-13, others at technical setup.
    sources = np.array(["salesforce", "hubspot", "snowflake", "bigquery", "postgres", "s3"])
    k_int = rng.integers(1, 4, n)
    acc = np.repeat(all_idx, k_int)
    base = np.where(early_integration, rng.uniform(1, 13, n), tech - rng.uniform(0.2, 2, n))
    day = np.repeat(base, k_int) + rng.uniform(0, 3, len(acc)) * (np.arange(len(acc)) % 3 > 0)
    day = np.where(early_integration[acc], np.minimum(day, 13.9), day)
    ok = np.isfinite(day) & (day > 0.5)
    props = np.array([json.dumps({"source": s}) for s in rng.choice(sources, len(acc))], dtype=object)
    add(acc[ok], "integration_connected", day[ok], np.zeros(ok.sum(), int), props[ok])
    ok_tech = np.isfinite(tech)
    add(all_idx[ok_tech], "data_imported", tech[ok_tech] - 0.05, np.zeros(ok_tech.sum(), int), None)

    # Invitations: early inviters send 3-8 in the first two weeks.
    k_inv = np.where(early_invites, rng.integers(3, 9, n), rng.integers(0, 3, n)) + rng.integers(0, 4, n)
    acc = np.repeat(all_idx, k_inv)
    first_k = np.concatenate([np.arange(k) for k in k_inv]) if len(acc) else np.array([], int)
    early_part = np.where(early_invites, np.maximum(3, k_inv - 2), np.minimum(k_inv, 1))
    day = np.where(
        first_k < early_part[acc],
        np.where(early_invites[acc], rng.uniform(1, 13.9, len(acc)), rng.uniform(14, 40, len(acc))),
        rng.uniform(15, 90, len(acc)),
    )
    roles = np.array(
        [json.dumps({"role": r}) for r in rng.choice(["analyst", "viewer", "admin"], len(acc), p=[0.6, 0.3, 0.1])],
        dtype=object,
    )
    add(acc, "user_invited", day, first_k + 1, roles)

    # Training sessions: admins then analysts, early for the early trainees.
    k_tr = rng.integers(2, 8, n)
    acc = np.repeat(all_idx, k_tr)
    kth = np.concatenate([np.arange(k) for k in k_tr]) if len(acc) else np.array([], int)
    base = np.where(early_training, rng.uniform(2, 12, n), training - rng.uniform(0, 4, n))
    day = np.repeat(base, k_tr) + np.where(
        early_training[acc], rng.uniform(0, 1.5, len(acc)), rng.uniform(0, 6, len(acc))
    )
    day = np.where(early_training[acc], np.minimum(day, 13.9), day)
    ok = np.isfinite(day) & (day > 0.5)
    role = np.where(kth < 2, "admin", "analyst")
    props = np.array([json.dumps({"role": r}) for r in role], dtype=object)
    add(acc[ok], "training_attended", day[ok], kth[ok], props[ok])

    # Value: dashboards created and reports shared after first value.
    fv = np.isfinite(first_value)
    k_d = np.where(fv, rng.integers(1, 7, n), 0)
    acc = np.repeat(all_idx, k_d)
    day = (
        first_value[acc]
        - 0.3
        + rng.exponential(20, len(acc)) * (np.concatenate([np.arange(k) for k in k_d]) > 0 if len(acc) else 1)
    )
    add(acc, "dashboard_created", day, rng.integers(0, 5, len(acc)), None)
    k_r = np.where(fv, rng.integers(0, 5, n), 0)
    acc = np.repeat(all_idx, k_r)
    day = first_value[acc] + rng.exponential(25, len(acc))
    add(acc, "report_shared", day, rng.integers(0, 5, len(acc)), None)

    # Some self-serve accounts trialled before their contract started.
    trial = (channel == "self-serve") & (rng.random(n) < 0.2)
    k_t = np.where(trial, rng.integers(2, 6, n), 0)
    acc = np.repeat(all_idx, k_t)
    add(acc, "login", -rng.uniform(1, 10, len(acc)), rng.integers(0, 3, len(acc)), None)

    onboarding_events = sum(len(p) for p in parts)

    # --- daily product usage ---
    activated_share = _sigmoid(0.8 + 1.0 * z) * 0.85 + 0.12
    n_activated = np.maximum(1, np.round(seats * activated_share)).astype(int)
    days = np.floor(end_day).astype(int) + 1
    days = np.maximum(days, 0)
    ad_acc = np.repeat(all_idx, days)
    ad_day = np.concatenate([np.arange(d) for d in days]) if days.sum() else np.array([], int)
    weekday = (start[ad_acc] + ad_day.astype("timedelta64[D]")).astype("datetime64[D]").view("int64")
    weekend = ((weekday + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    # Ramp up after technical setup; stalled accounts fade; churners fade before leaving.
    ramp = np.where(ad_day < tech[ad_acc], 0.35, 1.0)
    stalled_after = np.where(
        stall_at < len(MILESTONE_KEYS), day_done[np.arange(n), np.minimum(stall_at, len(MILESTONE_KEYS) - 1)], np.inf
    )
    fade = np.where(ad_day > stalled_after[ad_acc] + 14, 0.35, 1.0)
    to_churn = churn_day[ad_acc] - ad_day
    fade = fade * np.where(to_churn < 90, np.clip(to_churn / 90, 0.15, 1.0), 1.0)
    base_p = _sigmoid(1.5 + 1.0 * z)[ad_acc]
    p_day = base_p * ramp * fade * np.where(weekend, 0.12, 1.0)

    # Fit the event budget: fewer events per user-day first, then fewer active user-days.
    pu, lam = 0.35, 1.2
    expected = float((p_day * n_activated[ad_acc] * pu).sum() * (1 + lam))
    budget = max(target_events - onboarding_events, 0)
    if expected > budget > 0:
        scale = budget / expected
        new_lam = max(scale * (1 + lam), 1.1) - 1
        pu = pu * scale * (1 + lam) / (1 + new_lam)
        lam = new_lam
    active = rng.random(len(ad_acc)) < p_day
    ad_acc, ad_day = ad_acc[active], ad_day[active]
    users_today = rng.binomial(n_activated[ad_acc], min(pu, 1.0))
    ua = np.repeat(ad_acc, users_today)
    ud = np.repeat(ad_day, users_today)
    user = (rng.random(len(ua)) * n_activated[ua]).astype(int)
    per_user = 1 + rng.poisson(lam, len(ua))
    ea = np.repeat(ua, per_user)
    ed = np.repeat(ud, per_user).astype(float) + rng.uniform(8 / 24, 19 / 24, per_user.sum())
    eu = np.repeat(user, per_user)
    names = np.asarray(rng.choice(PRODUCT_EVENTS, size=len(ea), p=PRODUCT_P), dtype=object)
    add(ea, names, ed, eu, None)

    ev = pd.concat(parts, ignore_index=True)
    ev = ev[ev["ts"] <= horizon]
    ev["account_id"] = ext_ids[ev["acc"].to_numpy()]
    ev["user_id"] = "u" + ev["user"].astype(int).astype(str).str.zfill(3)
    ev["ts"] = pd.to_datetime(ev["ts"]).dt.tz_localize("UTC")
    ev = ev.drop_duplicates(["account_id", "event", "ts", "user_id"])
    ev = ev.sort_values(["account_id", "ts", "event"], kind="stable").reset_index(drop=True)
    return ev[["account_id", "event", "ts", "user_id", "properties"]]


# Which milestone completes each template item (index into MILESTONE_KEYS).
_ITEM_MILESTONE = {
    "All data sources connected": 1,
    "Data validation completed": 1,
    "User accounts provisioned": 1,
    "Admins trained": 2,
    "Analysts trained": 2,
    "Active weekly users": 4,
    "Custom dashboards created": 3,
    "Insights shared with leadership": 4,
    "Data-driven decisions influenced": 5,
    "Customer satisfaction score": 5,
}
_BLOCK_NOTES = [
    "Waiting on customer IT to approve SSO",
    "Data warehouse credentials not yet shared",
    "Champion on leave; no admin assigned",
    "Security review pending",
]


def _checklist(
    *,
    ext_ids: np.ndarray,
    start: np.ndarray,
    segment: np.ndarray,
    csm: np.ndarray,
    done_ts: np.ndarray,
    observed: np.ndarray,
    stall_at: np.ndarray,
    has_champion: np.ndarray,
    champion_ts: np.ndarray,
    expanded_by: dict,
    age_days: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    rows = []
    targets_by_seg = {s: [m["target_days"][s] for m in DEFAULT_MILESTONES] for s in SEGMENT_P}
    for i in range(len(ext_ids)):
        seg_targets = targets_by_seg[segment[i]]
        for pos, item in enumerate(DEFAULT_CHECKLIST):
            crit = item["criterion"]
            status, done_at, actual, note = "not started", None, "", ""
            if crit in _ITEM_MILESTONE:
                j = _ITEM_MILESTONE[crit]
                due = start[i] + np.timedelta64(seg_targets[j], "D")
                if observed[i, j]:
                    status, done_at = "done", done_ts[i, j]
                    actual = item["target"].rstrip("+")
                elif observed[i, max(j - 1, 0)]:
                    status = "in progress"
                if stall_at[i] == j and observed[i, j - 1]:
                    status = "blocked"
                    note = _BLOCK_NOTES[i % len(_BLOCK_NOTES)]
            elif crit == "Champion identified":
                due = start[i] + np.timedelta64(14, "D")
                if has_champion[i]:
                    status, done_at, actual = "done", champion_ts[i], "Yes"
            else:  # Expansion opportunity identified
                due = start[i] + np.timedelta64(seg_targets[-1], "D")
                exp = expanded_by.get(ext_ids[i])
                if exp is not None:
                    status, actual = "done", "Yes"
                    done_at = np.datetime64(exp, "s") - np.timedelta64(20, "D")
                elif observed[i, 3]:
                    status = "in progress"
            rows.append(
                (
                    ext_ids[i],
                    item["category"],
                    crit,
                    item["target"],
                    actual,
                    status,
                    csm[i],
                    pd.Timestamp(due).date(),
                    note,
                    item["metric"],
                    pos,
                    done_at,
                )
            )
    df = pd.DataFrame(
        rows,
        columns=[
            "account_id",
            "category",
            "criterion",
            "target",
            "actual",
            "status",
            "owner_email",
            "due_date",
            "note",
            "metric",
            "position",
            "done_at",
        ],
    )
    df["done_at"] = pd.to_datetime(df["done_at"]).dt.tz_localize("UTC")
    return df


# ----------------------------------------------------------------------------- loading


EVENT_BATCH = 200_000


def _load_events(session, ev: pd.DataFrame, ids, say=None) -> None:
    """Insert the demo's events in batches, their accounts mapped from external id (`ids`)
    to the database's; `say(i, n)` reports progress before each batch."""
    from db.bulk import insert_events

    for i in range(0, len(ev), EVENT_BATCH):
        part = ev.iloc[i : i + EVENT_BATCH]
        if say is not None:
            say(i, len(ev))
        insert_events(
            session,
            pd.DataFrame(
                {
                    "account_id": part["account_id"].map(ids).to_numpy(),
                    "event": part["event"].to_numpy(),
                    "ts": part["ts"].to_numpy(),
                    "user_id": part["user_id"].to_numpy(),
                    "properties": part["properties"].to_numpy(),
                }
            ),
        )


def load(session, data: DemoData, *, progress=None) -> None:
    """Write a generated portfolio through the importer's bulk writers (no commit)."""
    from sqlalchemy import select

    from db.bulk import ACCOUNT_COLUMNS, upsert
    from db.models import Account, AccountMilestone, ChecklistItem, Meta, Outcome, SuccessPlan, TeamMember
    from db.session import bump_data_version
    from db.settings_store import ensure_defaults

    def say(f: float, msg: str) -> None:
        if progress:
            progress(f, msg)

    ensure_defaults(session)
    actor = "demo"
    say(0.0, "team and accounts")
    upsert(session, TeamMember.__table__, data.team, key=["email"], columns=["name", "role"], actor=actor)
    team = dict(session.execute(select(TeamMember.email, TeamMember.id)).all())
    acc = data.accounts.rename(columns={"account_id": "external_id"}).copy()
    acc["csm_id"] = acc.pop("csm_email").map(team)
    upsert(session, Account.__table__, acc, key=["external_id"], columns=ACCOUNT_COLUMNS, actor=actor)
    ids = dict(session.execute(select(Account.external_id, Account.id)).all())

    say(0.05, "milestones, outcomes, checklists, plans")
    ms = data.milestones.rename(columns={"milestone": "milestone_key"}).copy()
    ms["account_id"] = ms["account_id"].map(ids)
    ms["completed_at"] = ms["completed_at"].astype(object).where(ms["completed_at"].notna(), None)
    upsert(
        session,
        AccountMilestone.__table__,
        ms,
        key=["account_id", "milestone_key"],
        columns=["due_date", "completed_at"],
        actor=actor,
    )
    out = data.outcomes.copy()
    out["account_id"] = out["account_id"].map(ids)
    upsert(session, Outcome.__table__, out, key=["account_id", "date", "type"], columns=["arr_change"], actor=actor)
    cl = data.checklist.copy()
    cl["account_id"] = cl["account_id"].map(ids)
    cl["owner_id"] = cl.pop("owner_email").map(team)
    cl["done_at"] = cl["done_at"].astype(object).where(cl["done_at"].notna(), None)
    cl["metric"] = cl["metric"].astype(object).where(cl["metric"].notna(), None)
    upsert(
        session,
        ChecklistItem.__table__,
        cl,
        key=["account_id", "category", "criterion"],
        columns=["target", "actual", "status", "owner_id", "due_date", "note", "metric", "position", "done_at"],
        actor=actor,
    )
    plans = data.success_plans.copy()
    plans["account_id"] = plans["account_id"].map(ids)
    upsert(
        session,
        SuccessPlan.__table__,
        plans,
        key=["account_id"],
        columns=["goals", "success_30", "success_60", "success_90", "champion", "admin_contact", "executive_sponsor"],
        actor=actor,
    )

    _load_events(session, data.events, ids, say=lambda i, n: say(0.1 + 0.85 * i / max(n, 1), f"events {i:,} of {n:,}"))
    meta = session.get(Meta, "demo")
    value = json.dumps(data.meta)[:200]
    if meta is None:
        session.add(Meta(key="demo", value=value))
    else:
        meta.value = value
    bump_data_version(session)
    say(1.0, "done")


# ----------------------------------------------------------------------------- at scale

CHUNK_ACCOUNTS = 5_000
_CHECKLIST_COLUMNS = [
    "account_id",
    "category",
    "criterion",
    "target",
    "actual",
    "status",
    "owner_id",
    "due_date",
    "note",
    "metric",
    "position",
    "done_at",
]


def generate_chunks(
    *,
    accounts: int = 600,
    seed: int = 42,
    as_of: date | None = None,
    events: int | None = None,
    chunk_accounts: int | None = None,
) -> Iterator[DemoData]:
    """The portfolio in chunks of `chunk_accounts` accounts, deterministic for (accounts,
    seed, as_of). One chunk is `generate(...)` itself; beyond that chunk k draws from the
    stream seeded (seed, k) and gets its share of the event target."""
    as_of = as_of or datetime.now(UTC).date()
    chunk_accounts = chunk_accounts or CHUNK_ACCOUNTS
    if accounts <= chunk_accounts:
        yield generate(accounts=accounts, seed=seed, as_of=as_of, events=events)
        return
    total_events = events if events is not None else default_event_target(accounts)
    done_events = 0
    for k, lo in enumerate(range(0, accounts, chunk_accounts)):
        n = min(chunk_accounts, accounts - lo)
        # Shares by cumulative rounding, so the chunks' targets add up to the total.
        share = round(total_events * (lo + n) / accounts) - done_events
        done_events += share
        yield generate(accounts=n, seed=[seed, k], as_of=as_of, events=share, first_account=lo)


def load_chunks(session, chunks: Iterator[DemoData], *, accounts: int, progress=None) -> dict:
    """Write a chunked portfolio into a database without portfolio data (no commit); the
    demo's meta is the chunks' summed. Rows are inserted, not diffed: nothing is there."""
    from sqlalchemy import func, select

    from db.bulk import ACCOUNT_COLUMNS, upsert
    from db.models import Account, AccountMilestone, ChecklistItem, Meta, Outcome, SuccessPlan, TeamMember
    from db.session import bump_data_version
    from db.settings_store import ensure_defaults

    if session.execute(select(func.count()).select_from(Account)).scalar_one():
        raise ValueError("load_chunks writes into a database without accounts")
    ensure_defaults(session)
    meta: dict = {}
    team: dict = {}
    written = 0
    for data in chunks:
        if not team:
            upsert(session, TeamMember.__table__, data.team, key=["email"], columns=["name", "role"], actor="demo")
            team = dict(session.execute(select(TeamMember.email, TeamMember.id)).all())
        if progress:
            progress(0.95 * written / max(accounts, 1), f"accounts {written:,} of {accounts:,}")
        acc = data.accounts.rename(columns={"account_id": "external_id"})
        acc = acc.assign(csm_id=acc.pop("csm_email").map(team))
        _insert(session, Account.__table__, acc[["external_id", *ACCOUNT_COLUMNS]])
        ext = acc["external_id"].tolist()
        ids = dict(session.execute(select(Account.external_id, Account.id).where(Account.external_id.in_(ext))).all())
        ms = data.milestones.rename(columns={"milestone": "milestone_key"})
        ms = ms.assign(account_id=ms["account_id"].map(ids))
        _insert(session, AccountMilestone.__table__, ms[["account_id", "milestone_key", "due_date", "completed_at"]])
        out = data.outcomes.assign(account_id=data.outcomes["account_id"].map(ids))
        _insert(session, Outcome.__table__, out[["account_id", "date", "type", "arr_change"]])
        cl = data.checklist.assign(account_id=data.checklist["account_id"].map(ids))
        cl = cl.assign(owner_id=cl.pop("owner_email").map(team))
        _insert(
            session,
            ChecklistItem.__table__,
            cl[_CHECKLIST_COLUMNS],
        )
        plans = data.success_plans.assign(account_id=data.success_plans["account_id"].map(ids))
        _insert(session, SuccessPlan.__table__, plans)
        _load_events(session, data.events, ids)
        written += len(acc)
        if not meta:
            meta = dict(data.meta)
        else:
            for k in ("accounts", "events", "stalled", "churned"):
                meta[k] += data.meta[k]
    row = session.get(Meta, "demo")
    value = json.dumps(meta)[:200]
    if row is None:
        session.add(Meta(key="demo", value=value))
    else:
        row.value = value
    bump_data_version(session)
    if progress:
        progress(1.0, "done")
    return meta


def _insert(session, table, frame: pd.DataFrame) -> None:
    """Insert a frame's rows (NaN/NaT as NULL, numpy scalars as Python values)."""
    from db.bulk import _norm

    if frame.empty:
        return
    cols = list(frame.columns)
    rows = [dict(zip(cols, map(_norm, r), strict=True)) for r in frame.itertuples(index=False, name=None)]
    session.execute(table.insert(), rows)
