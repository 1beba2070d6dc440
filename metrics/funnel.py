"""Funnels with PostHog's semantics, per account (PRODUCT.md §4).

Input: one row per event of an account that can matter to the funnel: `account_id`,
`name`, `ts` (naive UTC datetime64) and optionally `prop` (the breakdown property's value
on that event, None where it is not set). A step is an event name or `milestone:<key>`.
Rows whose name is neither a step nor an exclusion are "other" events: in strict mode
they break a sequence, elsewhere they are ignored.

Ordered and strict funnels follow PostHog's engine (`funnel-udf/src/steps.rs`) step for
step: events are taken in time order; each step k holds one attempt (its start and the
times of the events that filled steps 1..k); a step-1 event replaces the attempt held at
step 1; an event of step k copies the attempt at k-1, if within its window from step 1,
to step k unless step k already holds an attempt with the same start. Different step
events at the same instant are taken in step order (and, in strict mode, do not clear one
another); equal ones one by one, by value (PostHog: in storage order, which only matters
with step attribution). The account counts at the furthest step; its times are
those of the attempt that first got there (so `a, a, b` converts from the second `a`).
An exclusion event between steps i and j, within the window, marks the attempt that has
reached one of steps i..j-1 but not the next; an account whose furthest attempt is marked
leaves the funnel (a later clean attempt that gets as far brings it back).

- unordered: "completed N steps" = N distinct step events at or after a step event
  (the anchor) within the window.

Accounts that have not converted and whose window is still open at the as-of time are
*in progress*, reported apart from drop-offs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from metrics.stats import wilson_arrays

MODES = ("ordered", "strict", "unordered")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_ATTRIBUTION_RE = re.compile(r"^(first|last|step:(\d+))$")
RANK_BITS = 32
NONE_VALUE = "(none)"  # the bucket of accounts without a value


def parse_window(text: str | int | float | None) -> int:
    """'14d', '5m', '2w', '300s', '12h' or a bare number of days -> seconds (default 14 days)."""
    if text is None or text == "":
        return 14 * 86400
    if isinstance(text, int | float):
        seconds = int(text * 86400)
    else:
        m = _WINDOW_RE.match(str(text))
        if not m:
            raise ValueError(f"bad conversion window {text!r}: use a number and a unit s, m, h, d or w (e.g. 14d)")
        seconds = int(float(m.group(1)) * UNIT_SECONDS[(m.group(2) or "d").lower()])
    if seconds <= 0:
        # PostHog: a zero or negative window falls back to the 14-day default.
        return 14 * 86400
    return seconds


@dataclass(frozen=True)
class Exclusion:
    """An event that, between step `from_step` and step `to_step` (1-based), removes the account."""

    event: str
    from_step: int
    to_step: int

    @classmethod
    def parse(cls, text: str) -> Exclusion:
        """'EVENT:FROM:TO' (steps 1-based; the event may itself contain ':', e.g. milestone:key:1:2)."""
        parts = str(text).rsplit(":", 2)
        if len(parts) != 3 or not parts[0].strip() or not parts[1].strip().isdigit() or not parts[2].strip().isdigit():
            raise ValueError(f"bad exclusion {text!r}: use EVENT:FROM:TO with step numbers, e.g. support_ticket:1:3")
        return cls(parts[0].strip(), int(parts[1]), int(parts[2]))

    def __str__(self) -> str:
        return f"{self.event}:{self.from_step}:{self.to_step}"


@dataclass(frozen=True)
class FunnelSpec:
    steps: tuple[str, ...]
    mode: str = "ordered"
    window_seconds: int = 14 * 86400
    entry_from: datetime | None = None  # step 1 at or after (naive UTC)
    entry_to: datetime | None = None  # step 1 at or before (naive UTC)
    as_of: datetime | None = None  # exclusive end of what is observed; None: nothing is in progress
    exclusions: tuple[Exclusion, ...] = ()
    attribution: str = "first"  # for event-property breakdowns: first | last | step:N

    def validate(self) -> None:
        if not 2 <= len(self.steps) <= 10:
            raise ValueError(f"a funnel needs 2 to 10 steps, got {len(self.steps)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown funnel mode {self.mode!r}; use one of {', '.join(MODES)}")
        if any(not s or not str(s).strip() for s in self.steps):
            raise ValueError("a funnel step is empty")
        if self.mode == "unordered" and len(set(self.steps)) != len(self.steps):
            raise ValueError("an unordered funnel cannot repeat a step")
        if self.entry_from and self.entry_to and self.entry_from > self.entry_to:
            raise ValueError("the entry date range ends before it starts")
        n = len(self.steps)
        for x in self.exclusions:
            # PostHog's rules (posthog/hogql_queries/insights/funnels/base.py).
            if not 1 <= x.from_step < x.to_step <= n:
                raise ValueError(f"exclusion {x}: the range must go from a step to a later one, within steps 1 to {n}")
            if x.event in self.steps[x.from_step - 1 : x.to_step]:
                raise ValueError(
                    f"exclusion {x}: {x.event} is itself a step between steps {x.from_step} and {x.to_step}"
                )
        if self.exclusions and self.mode == "unordered":
            raise ValueError("exclusion steps need an ordered or strict funnel (PostHog's unordered engine skips them)")
        m = _ATTRIBUTION_RE.match(self.attribution or "")
        if not m:
            raise ValueError(f"bad attribution {self.attribution!r}: use first, last or step:N")
        if m.group(2) is not None:
            k = int(m.group(2))
            if not 1 <= k <= n:
                raise ValueError(f"attribution {self.attribution}: the funnel has steps 1 to {n}")
            if self.mode == "unordered":
                raise ValueError("attribution to a step needs an ordered or strict funnel")

    @property
    def attribution_step(self) -> int | None:
        """The 1-based step whose event gives the breakdown value (step:N), else None."""
        m = _ATTRIBUTION_RE.match(self.attribution or "")
        return int(m.group(2)) if m and m.group(2) is not None else None


@dataclass
class FunnelResult:
    spec: FunnelSpec
    accounts: pd.DataFrame  # one row per account that entered (per account and group with a property breakdown)
    steps: pd.DataFrame  # one row per (group, step)
    group_by: str | None = None
    meta: dict = field(default_factory=dict)


def _ns(x: datetime | None) -> int | None:
    return None if x is None else int(pd.Timestamp(x).value)


def _empty(k_steps: int, with_group: bool = False) -> pd.DataFrame:
    """Nobody entered: an empty frame with the real dtypes, so step times still subtract."""
    return pd.DataFrame(
        {
            "account_id": pd.Series(dtype=object),
            **({"group": pd.Series(dtype=object)} if with_group else {}),
            "furthest": pd.Series(dtype=np.int64),
            **{c: pd.Series(dtype="datetime64[ns]") for c in ["entered_at", "last_start"]},
            **{f"t{k}": pd.Series(dtype="datetime64[ns]") for k in range(k_steps)},
        }
    )


def step_vectors(spec: FunnelSpec) -> dict[str, tuple[int, ...]]:
    """Event name -> the steps it can fill (1-based) and, negated, the steps whose
    waiting attempt it excludes; in PostHog's order (steps up, then exclusions)."""
    out: dict[str, list[int]] = {}
    for k, s in enumerate(spec.steps, start=1):
        out.setdefault(s, []).append(k)
    excl: dict[str, set[int]] = {}
    for x in spec.exclusions:
        # PostHog flags exclusion_i for 0-based steps i in (from, to]: 1-based from+1..to.
        excl.setdefault(x.event, set()).update(range(x.from_step + 1, x.to_step + 1))
    for name, ks in excl.items():
        out.setdefault(name, []).extend(-k for k in sorted(ks))
    return {k: tuple(v) for k, v in out.items()}


def _walk(
    events: list[tuple[int, int, object, tuple[int, ...]]],
    *,
    n: int,
    window: int,
    strict: bool,
    attr_step: int | None = None,
    attr_value: object = None,
) -> tuple[int, bool, tuple[int, ...]]:
    """One account through steps.rs: (furthest step, excluded, step times of that attempt).

    `events`: (ts, id, breakdown value, step vector), sorted by ts. An attempt is
    (start, excluded, times, ids); `held[k]` is the attempt at step k, `held[0]` the
    instant being processed (any event can start from it)."""
    held: list[tuple | None] = [None] * (n + 1)
    best_k, best = 0, None

    def take(ts: int, uid: int, value: object, vector: tuple[int, ...], multi: bool) -> None:
        nonlocal best_k, best
        for step in reversed(vector):
            k = -step if step < 0 else step
            prev = held[k - 1]
            if prev is None or ts - prev[0] > window:
                continue
            cur = held[k]
            if cur is not None and cur[0] == prev[0]:
                continue  # this attempt is at step k already
            if step < 0:
                if not prev[1]:
                    held[k - 1] = (prev[0], True, prev[2], prev[3])
                    if best_k == k - 1 and ts - best[0] <= window:
                        best = (best[0], True, best[2], best[3])
                continue
            if attr_step is not None and k == attr_step and value != attr_value:
                continue  # step attribution: this step's event must carry the bucket's value
            if multi and uid in prev[3]:
                continue  # one event fills one step of an attempt
            new = (prev[0], prev[1], (*prev[2], ts), (*prev[3], uid))
            if not prev[1]:
                held[k] = new
            if k > best_k or (k == best_k and best[1]):
                best_k, best = k, new
        if strict and not multi:
            # Strict: any event clears the attempts it did not move.
            for i in range(1, n + 1):
                if i not in vector:
                    held[i] = None

    i, m = 0, len(events)
    while i < m:
        ts = events[i][0]
        j = i + 1
        while j < m and events[j][0] == ts:
            j += 1
        held[0] = (ts, False, (), ())
        if j == i + 1:
            e = events[i]
            take(ts, e[1], e[2], e[3], False)
        elif all(e[3] == events[i][3] for e in events[i:j]):
            for e in events[i:j]:
                take(ts, e[1], e[2], e[3], False)
        else:
            # Different events at one instant: each step they fill, in step order; exclusions
            # and strict clearing are skipped for the group (as steps.rs does).
            flat = sorted(((s, e) for e in events[i:j] for s in e[3] if s > 0), key=lambda p: p[0])
            for s, e in flat:
                take(ts, e[1], e[2], (s,), True)
        if held[n] is not None:
            break
        i = j
    if best is None:
        return 0, False, ()
    return best_k, best[1], best[2]


def _ts_ns(s: pd.Series) -> np.ndarray:
    """Naive timestamps as int64 nanoseconds."""
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = pd.to_datetime(s)
    return s.to_numpy("datetime64[ns]").view(np.int64)


def _touch(values: list, times: list[int], *, last: bool) -> object:
    """First (or last) touch: the value on the earliest (latest) event that has one; ties
    go to the alphabetically first value, so storage order never decides."""
    got = [(t, str(v)) for t, v in zip(times, values, strict=True) if v is not None]
    if not got:
        return None
    t_best = max(t for t, _ in got) if last else min(t for t, _ in got)
    return min(v for t, v in got if t == t_best)


def _value(v: object) -> object:
    """A property value as a bucket label: missing and empty both mean none (as in PostHog)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v)
    return s if s != "" else None


def _ordered_rows(occ: pd.DataFrame, spec: FunnelSpec, *, by_prop: bool, block: list | None = None) -> list[tuple]:
    """(account, group, furthest, excluded, last_start, step times) per account and bucket.
    block: if given, the accounts walked all at once (_single_start) are appended to it as
    columns (account ids, furthest, last start, step times with NaT's integer after the
    furthest) instead of being returned as rows."""
    n = len(spec.steps)
    strict = spec.mode == "strict"
    vectors = step_vectors(spec)
    if not strict:
        occ = occ[occ["name"].isin(set(vectors))]
    if occ.empty:
        return []
    ts = _ts_ns(occ["ts"])
    acode, accounts = pd.factorize(occ["account_id"], sort=True)
    accounts = np.asarray(accounts)  # indexed once per account below: an array, not an Index
    props = occ["prop"].map(_value).to_numpy(dtype=object) if by_prop and "prop" in occ else np.full(len(occ), None)
    # Names as codes ("" = another event, in strict mode), with their step vectors.
    ncode, nuniq = pd.factorize(occ["name"].astype(object).fillna(""), sort=True)
    vec_u = [vectors.get(u, ()) for u in nuniq]
    no_start_u = [tuple(x for x in v if x != 1) for v in vec_u]
    lo, hi = _ns(spec.entry_from), _ns(spec.entry_to)
    # Storage order never matters: sort by account, time, then name and value.
    pcode = pd.factorize(props, sort=True)[0] if by_prop else np.zeros(len(ts), dtype=np.int64)
    order = np.lexsort((pcode, ncode, ts, acode))
    ts, ncode, acc, props, pcode = ts[order], ncode[order], acode[order], props[order], pcode[order]
    outside = np.zeros(len(ts), dtype=bool)
    if lo is not None:
        outside |= ts < lo
    if hi is not None:
        outside |= ts > hi
    window = int(spec.window_seconds) * 1_000_000_000
    attr = spec.attribution_step if by_prop else None
    can_start = np.array([1 in v for v in vec_u], dtype=bool)[ncode] & ~outside
    bounds = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1], True])
    # Per account, the first and last start: nothing before the first start can fill a
    # step, nothing after the last start's window can either, so the walk skips them
    # (and an account that never starts has nothing left).
    sizes = np.diff(bounds)
    first_start = np.repeat(np.minimum.reduceat(np.where(can_start, ts, np.iinfo(np.int64).max), bounds[:-1]), sizes)
    last_start = np.repeat(np.maximum.reduceat(np.where(can_start, ts, np.iinfo(np.int64).min), bounds[:-1]), sizes)
    idx = np.flatnonzero((ts >= first_start) & (ts <= last_start + window))
    if len(idx) == 0:
        return []
    short = np.array([len(v) <= 1 for v in vec_u], dtype=bool)[ncode]
    idx = _drop_repeats(idx, acc=acc, ts=ts, kind=ncode * 2 + outside, val=pcode, short=short)
    values = {}
    if by_prop:
        # The events that give values: step attr's (step attribution), else any step or
        # exclusion event; a step-1 event outside the entry range is neither.
        def pick(v: tuple[int, ...]) -> bool:
            return attr in v if attr is not None else bool(v)

        use = np.where(
            outside,
            np.array([pick(v) for v in no_start_u], bool)[ncode],
            np.array([pick(v) for v in vec_u], bool)[ncode],
        )
        values = _bucket_values(acc[use], ts[use], props[use], attr=attr, last=spec.attribution == "last")
    rows: list[tuple] = []
    simple = all(len(v) <= 1 and min(v, default=1) > 0 for v in vec_u)
    if block is not None and not strict and attr is None and not by_prop and simple:
        # One start, one attempt: accounts with a single step-1 event in the entry range
        # (most, when step 1 happens once) are walked for all at once (_single_start).
        single = np.add.reduceat(can_start.astype(np.int64), bounds[:-1]) == 1
        fast = single[acc[idx]]
        if fast.any():
            step_u = np.array([v[0] if v else 0 for v in vec_u], dtype=np.int64)
            step_out = np.array([v[0] if v else 0 for v in no_start_u], dtype=np.int64)
            codes, furthest, start, times = _single_start(
                idx[fast], acc=acc, ts=ts, step=np.where(outside, step_out[ncode], step_u[ncode]), n=n, window=window
            )
            block.append((accounts[codes], furthest, start, times))
            idx = idx[~fast]
    vec = [(no_start_u if o else vec_u)[c] for c, o in zip(ncode[idx].tolist(), outside[idx].tolist(), strict=True)]
    events = list(zip(ts[idx].tolist(), idx.tolist(), props[idx].tolist(), vec, strict=True))
    acc_k = acc[idx]
    kb = np.flatnonzero(np.r_[True, acc_k[1:] != acc_k[:-1], True]).tolist() if len(idx) else [0]
    starts_k = last_start[idx][kb[:-1]].tolist()
    for a, b0, b1, start in zip(acc_k[kb[:-1]].tolist(), kb[:-1], kb[1:], starts_k, strict=True):
        evs = events[b0:b1]
        if attr is not None:
            # PostHog's step attribution: one run per value seen on a step-N event; in
            # each, step N may only be filled by an event with that value.
            runs = [
                (v, _walk(evs, n=n, window=window, strict=strict, attr_step=attr, attr_value=v))
                for v in values.get(a, ())
            ]
        elif len(evs) == 1:
            runs = [(values.get(a), (1, False, (evs[0][0],)))]  # a lone start
        else:
            runs = [(values.get(a), _walk(evs, n=n, window=window, strict=strict))]
        for group, (k, excluded, times) in runs:
            if k >= 1:
                rows.append((accounts[a], group, k, excluded, start, times))
    return rows


def _single_start(
    idx: np.ndarray, *, acc: np.ndarray, ts: np.ndarray, step: np.ndarray, n: int, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What _walk gives, for every account at once, when each account here has one start
    and every event fills at most one step, exclusions aside (an ordered funnel): the
    one attempt takes, for each step in turn, the first event of that step at the instant
    the previous step was filled or later (events at one instant fill steps in step
    order), while within the window of the start. Account codes, furthest step, start and
    step times (NaT's integer after the furthest), one row per account in account order.

    idx: the positions walked (sorted by account, then time); step: per position, the step
    its event fills (0 for none; a step-1 event outside the entry range fills none)."""
    a, t, k = acc[idx], ts[idx], step[idx]
    # The instant's rank in the whole stream: increasing by account, then time.
    rank = np.cumsum(np.r_[True, (a[1:] != a[:-1]) | (t[1:] != t[:-1])])
    first = k == 1
    accs, start, cur = a[first], t[first], rank[first]  # one start per account, in order
    times = np.full((len(accs), n), np.iinfo(np.int64).min, dtype=np.int64)
    times[:, 0] = start
    furthest = np.ones(len(accs), dtype=np.int64)
    alive = np.ones(len(accs), dtype=bool)
    for s in range(2, n + 1):
        m = k == s
        ra, rt, rr = a[m], t[m], rank[m]
        if not len(rr):
            break
        pos = np.searchsorted(rr, cur, side="left")
        at = np.minimum(pos, len(rr) - 1)
        ok = alive & (pos < len(rr)) & (ra[at] == accs) & (rt[at] - start <= window)
        times[ok, s - 1] = rt[at][ok]
        cur = np.where(ok, rr[at], cur)
        furthest += ok
        alive = ok
        if not alive.any():
            break
    return accs, furthest, start, times


def _drop_repeats(
    idx: np.ndarray, *, acc: np.ndarray, ts: np.ndarray, kind: np.ndarray, val: np.ndarray, short: np.ndarray
) -> np.ndarray:
    """PostHog's pre-filter (base.py `_udf_event_array_filter`): an event that fills at most
    one step, between two events of the same kind and value at other instants, changes
    nothing in the walk, so it is left out."""
    if len(idx) < 3:
        return idx
    a, t, k, v = acc[idx], ts[idx], kind[idx], val[idx]
    same = (a[1:] == a[:-1]) & (k[1:] == k[:-1]) & (v[1:] == v[:-1]) & (t[1:] > t[:-1])
    middle = np.r_[False, same[:-1] & same[1:], False] & short[idx]
    return idx[~middle]


def _bucket_values(acc: np.ndarray, ts: np.ndarray, props: np.ndarray, *, attr: int | None, last: bool) -> dict:
    """Per account: every value on its step-`attr` events (step attribution, none included),
    else the first or last value on its events (ties: the smallest value)."""
    df = pd.DataFrame({"a": acc, "t": ts, "v": props})
    if attr is not None:
        key = df["v"].map(lambda v: (v is not None, "" if v is None else str(v)))
        df = df.assign(k=key).drop_duplicates(["a", "k"]).sort_values(["a", "k"])
        return {a: tuple(part["v"]) for a, part in df.groupby("a", sort=False)}
    df = df[df["v"].notna()]
    if not len(df):
        return {}
    # The earliest (latest) instant, then the smallest value at it.
    edge = df.groupby("a")["t"].transform("max" if last else "min")
    df = df[df["t"] == edge].sort_values(["a", "v"])
    return df.drop_duplicates("a").set_index("a")["v"].to_dict()


def _unordered_rows(occ: pd.DataFrame, spec: FunnelSpec, *, by_prop: bool) -> list[tuple]:
    """Unordered: from each anchor, the first occurrence of each step at the same instant or later."""
    k_steps = len(spec.steps)
    occ = occ[occ["name"].isin(set(spec.steps))]
    if occ.empty:
        return []
    codes, uniques = pd.factorize(occ["account_id"], sort=True)
    ts = _ts_ns(occ["ts"])
    names = occ["name"].to_numpy()
    props = occ["prop"].map(_value).to_numpy(dtype=object) if by_prop and "prop" in occ else np.full(len(occ), None)
    order = np.lexsort((pd.factorize(names, sort=True)[0], ts, codes))
    ts, names, codes, props = ts[order], names[order], codes[order], props[order]
    # Rank = the instant's position in the stream (monotone within an account): ties share
    # one, so "at or after" includes events at the same instant, whatever the storage order.
    rank = np.cumsum(np.r_[True, (codes[1:] != codes[:-1]) | (ts[1:] != ts[:-1])]).astype(np.int64)
    key = (codes.astype(np.int64) << RANK_BITS) + rank
    window = np.int64(spec.window_seconds) * 1_000_000_000
    NONE = np.iinfo(np.int64).min
    lo, hi = _ns(spec.entry_from), _ns(spec.entry_to)
    start_mask = np.ones(len(key), dtype=bool)
    if lo is not None:
        start_mask &= ts >= lo
    if hi is not None:
        start_mask &= ts <= hi
    s_key, s_ts, s_acc = key[start_mask], ts[start_mask], codes[start_mask]
    if len(s_key) == 0:
        return []
    first = np.full((len(s_key), k_steps), NONE, dtype=np.int64)
    for k, nm in enumerate(spec.steps):
        m = names == nm
        kk, kt = key[m], ts[m]
        if len(kk) == 0:
            continue
        pos = np.searchsorted(kk, s_key, side="left")
        posc = np.minimum(pos, len(kk) - 1)
        ok = (pos < len(kk)) & ((kk[posc] >> RANK_BITS) == (s_key >> RANK_BITS)) & ((kt[posc] - s_ts) <= window)
        first[:, k] = np.where(ok, kt[posc], NONE)
    reached = (first != NONE).sum(axis=1)
    srt = np.sort(np.where(first == NONE, np.iinfo(np.int64).max, first), axis=1)
    frame = pd.DataFrame({"acc": s_acc, "reached": reached, "skey": s_key, "sts": s_ts})
    last_start = frame.groupby("acc")["sts"].max()
    # Per account: the furthest; ties -> the earliest anchor.
    best = frame.sort_values(["acc", "reached", "skey"], ascending=[True, False, True], kind="stable")
    best = best.drop_duplicates("acc", keep="first")
    groups: dict[int, object] = {}
    if by_prop:
        for c, part in pd.DataFrame({"c": codes, "t": ts, "v": props}).groupby("c"):
            groups[c] = _touch(part["v"].tolist(), part["t"].tolist(), last=spec.attribution == "last")
    srt_l = srt[best.index.to_numpy()].tolist()
    last_l = last_start.loc[best["acc"].to_numpy()].tolist()
    return [
        (uniques[c], groups.get(c), r, False, ls, tuple(t[:r]))
        for c, r, ls, t in zip(best["acc"].tolist(), best["reached"].tolist(), last_l, srt_l, strict=True)
    ]


def per_account(occ: pd.DataFrame, spec: FunnelSpec, *, by_prop: bool = False) -> pd.DataFrame:
    """Furthest step and step times per account (per account and bucket for a property
    breakdown); `excluded` marks accounts an exclusion step removes."""
    spec.validate()
    k_steps = len(spec.steps)
    if "name" in occ and occ["name"].isna().any():
        occ = occ.assign(name=occ["name"].astype(object).where(occ["name"].notna(), None))
    block: list = []
    if spec.mode == "unordered":
        rows = _unordered_rows(occ, spec, by_prop=by_prop)
    else:
        rows = _ordered_rows(occ, spec, by_prop=by_prop, block=block)
    if not rows and not block:
        out = _empty(k_steps, with_group=by_prop)
        out["excluded"] = pd.Series(dtype=bool)
        return out
    nat = np.iinfo(np.int64).min  # NaT's integer
    parts = []
    if rows:
        parts.append(
            (
                np.array([r[0] for r in rows]),
                np.array([r[2] for r in rows], dtype=np.int64),
                np.array([r[3] for r in rows], dtype=bool),
                np.array([r[4] for r in rows], dtype=np.int64),
                np.array([(*r[5], *(nat,) * (k_steps - len(r[5]))) for r in rows], dtype=np.int64).reshape(-1, k_steps),
            )
        )
    for ids, furthest, start, times in block:  # no breakdown, no exclusion
        parts.append((ids, furthest, np.zeros(len(ids), dtype=bool), start, times))
    ids, furthest, excluded, start, times = (
        parts[0] if len(parts) == 1 else [np.concatenate(c) for c in zip(*parts, strict=True)]
    )
    if len(parts) > 1:  # the walked accounts and the others, each in account order
        order = np.argsort(ids, kind="stable")
        ids, furthest, excluded, start, times = ids[order], furthest[order], excluded[order], start[order], times[order]
    out = pd.DataFrame(
        {
            "account_id": ids,
            **({"group": [NONE_VALUE if r[1] is None else r[1] for r in rows]} if by_prop else {}),
            "furthest": furthest,
            "excluded": excluded,
        }
    )
    times = times.view("datetime64[ns]")
    out["entered_at"] = times[:, 0]
    out["last_start"] = start.view("datetime64[ns]")
    for k in range(k_steps):
        out[f"t{k}"] = times[:, k]
    return out


def _status(acc: pd.DataFrame, spec: FunnelSpec) -> pd.Series:
    k_steps = len(spec.steps)
    converted = acc["furthest"] >= k_steps
    if spec.as_of is None:
        open_ = pd.Series(False, index=acc.index)
    else:
        window = pd.Timedelta(seconds=spec.window_seconds)
        # The window's end is inclusive and as_of is the exclusive end of what is observed:
        # a window ending exactly at as_of still has its last instant to come.
        open_ = (acc["last_start"] + window) >= pd.Timestamp(spec.as_of)
    return pd.Series(np.where(converted, "converted", np.where(open_, "in progress", "dropped")), index=acc.index)


def step_table(acc: pd.DataFrame, spec: FunnelSpec) -> pd.DataFrame:
    """One row per step: accounts, conversion with Wilson intervals, times from previous."""
    k_steps = len(spec.steps)
    furthest = acc["furthest"].to_numpy()
    status = acc["status"].to_numpy() if "status" in acc else np.full(len(acc), "dropped")
    counts = np.array([(furthest >= k + 1).sum() for k in range(k_steps)])
    rows = []
    first_n = counts[0] if k_steps else 0
    for k in range(k_steps):
        n = counts[k]
        prev = counts[k - 1] if k else n
        at_prev = furthest == k  # reached k (1-based previous), not k+1
        in_prog = int(((status == "in progress") & at_prev).sum()) if k else 0
        dropped = int(prev - n - in_prog) if k else 0
        if k:
            delta = (acc[f"t{k}"] - acc[f"t{k - 1}"]).dt.total_seconds()
            delta = delta[furthest >= k + 1].dropna()
            mean = float(delta.mean()) if len(delta) else math.nan
            median = float(delta.median()) if len(delta) else math.nan
            p90 = float(delta.quantile(0.9)) if len(delta) else math.nan
        else:
            mean = median = p90 = math.nan
        name = spec.steps[k] if spec.mode != "unordered" else f"Completed {k + 1} step{'s' if k else ''}"
        rows.append((k + 1, name, int(n), int(prev), dropped, in_prog, mean, median, p90))
    df = pd.DataFrame(
        rows,
        columns=[
            "step",
            "name",
            "accounts",
            "previous_accounts",
            "dropped",
            "in_progress",
            "mean_seconds_from_previous",
            "median_seconds_from_previous",
            "p90_seconds_from_previous",
        ],
    )
    p, lo, hi = wilson_arrays(df["accounts"], df["previous_accounts"])
    df["conversion_from_previous"], df["conversion_from_previous_low"], df["conversion_from_previous_high"] = p, lo, hi
    p, lo, hi = wilson_arrays(df["accounts"], np.full(len(df), first_n))
    df["conversion_from_first"], df["conversion_from_first_low"], df["conversion_from_first_high"] = p, lo, hi
    # Among accounts whose outcome is decided (in-progress ones left out of the denominator).
    decided = df["previous_accounts"] - df["in_progress"]
    df["conversion_decided"] = np.where(decided > 0, df["accounts"] / decided.where(decided > 0, 1), np.nan)
    return df


def funnel(
    occ: pd.DataFrame,
    spec: FunnelSpec,
    *,
    attributes: pd.DataFrame | None = None,
    group_by: str | None = None,
) -> FunnelResult:
    """The funnel: per-account results and the step table (per group with a breakdown).

    `group_by` is an account attribute (one bucket per account) or `prop:NAME`, an event
    property whose value `occ["prop"]` carries, attributed by `spec.attribution`."""
    by_prop = bool(group_by) and str(group_by).startswith("prop:")
    acc = per_account(occ, spec, by_prop=by_prop)
    excluded = int(acc.loc[acc["excluded"], "account_id"].nunique())
    # PostHog drops an account whose furthest attempt is excluded from every step.
    acc = acc[~acc["excluded"]].drop(columns="excluded").reset_index(drop=True)
    acc["status"] = _status(acc, spec) if len(acc) else pd.Series(dtype=object)
    if group_by and not by_prop:
        if attributes is None or group_by not in attributes.columns:
            raise ValueError(f"cannot break down by {group_by!r}: not an account attribute")
        groups = attributes.set_index("account_id")[group_by]
        acc["group"] = acc["account_id"].map(groups).fillna(NONE_VALUE).astype(str)
    if group_by:
        parts = []
        for g, part in acc.groupby("group", sort=True):
            t = step_table(part, spec)
            t.insert(0, "group", g)
            parts.append(t)
        steps = pd.concat(parts, ignore_index=True) if parts else step_table(acc, spec).assign(group=None).iloc[0:0]
        if by_prop and "group" in acc:
            acc = acc[[c for c in acc.columns if c != "group"] + ["group"]]
    else:
        steps = step_table(acc, spec)
    return FunnelResult(spec=spec, accounts=acc, steps=steps, group_by=group_by, meta={"excluded_accounts": excluded})


def journeys_to_occurrences(journeys: dict[str, list[tuple]], steps: list[str] | None = None) -> pd.DataFrame:
    """Account journeys {account: [(event, iso_ts[, property value]), ...]} -> occurrences
    (every event, so strict mode sees the other events; `steps` keeps only those names)."""
    rows = []
    for acc, evs in journeys.items():
        for ev in evs:
            name, ts = ev[0], pd.Timestamp(ev[1])
            rows.append((acc, name, ts.tz_convert(None) if ts.tzinfo else ts, ev[2] if len(ev) > 2 else None))
    df = pd.DataFrame(rows, columns=["account_id", "name", "ts", "prop"])
    df["ts"] = pd.to_datetime(df["ts"]).astype("datetime64[ns]")
    if steps is not None:
        df = df[df["name"].isin(set(steps))]
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------- presentation


def conversion_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Per group (or for the whole funnel, group None): the accounts that entered (step 1),
    those that reached the last step, and the share; the denominator is always step 1."""
    if steps.empty:
        return pd.DataFrame(columns=["group", "entered", "converted", "rate", "rate_low", "rate_high"])
    d = steps if "group" in steps else steps.assign(group=None)
    rows = []
    for g, part in d.groupby("group", sort=False, dropna=False):
        part = part.sort_values("step")
        first, last = part.iloc[0], part.iloc[-1]
        rows.append(
            {
                "group": None if "group" not in steps else g,
                "entered": int(first["accounts"]),
                "converted": int(last["accounts"]),
                "rate": float(last["conversion_from_first"]),
                "rate_low": float(last["conversion_from_first_low"]),
                "rate_high": float(last["conversion_from_first_high"]),
            }
        )
    return pd.DataFrame(rows).sort_values(["rate", "entered"], ascending=False).reset_index(drop=True)


def strict_blocked_step(steps: pd.DataFrame, spec: FunnelSpec) -> int | None:
    """In a strict funnel, the first step that no account reached although some reached the
    step before it and one of the two is a milestone (a milestone is completed among other
    events, so "nothing else in between" rarely holds next to one); None otherwise."""
    if spec.mode != "strict":
        return None
    by_step = steps.groupby("step")["accounts"].sum()
    for k in range(2, len(spec.steps) + 1):
        milestone_next = spec.steps[k - 1].startswith("milestone:") or spec.steps[k - 2].startswith("milestone:")
        if milestone_next and by_step.get(k, 0) == 0 and by_step.get(k - 1, 0) > 0:
            return k
    return None
