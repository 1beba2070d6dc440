"""Funnels with PostHog's semantics, per account (PRODUCT.md §4).

Input: step occurrences, one row per event of an account that matches a step name:
`account_id`, `name`, `ts` (naive UTC datetime64) and `rank` (the event's position in
the account's stream; for strict mode the position among *all* its events, so that
"adjacent" can be checked). A step is an event name or `milestone:<key>`.

- ordered: each step at or after the previous one, other events allowed between; the
  same event name can fill several steps, one occurrence per step.
- strict: consecutive steps must be adjacent events of the account.
- unordered: "completed N steps" = N distinct step events within the window.

The conversion window runs from the step-1 timestamp, end inclusive. An account counts
at the furthest step any attempt reached; times come from the first attempt that reached
it. Accounts that have not converted and whose window is still open at the as-of time
are *in progress*, reported apart from drop-offs.
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
RANK_BITS = 32


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
class FunnelSpec:
    steps: tuple[str, ...]
    mode: str = "ordered"
    window_seconds: int = 14 * 86400
    entry_from: datetime | None = None  # step 1 at or after (naive UTC)
    entry_to: datetime | None = None  # step 1 at or before (naive UTC)
    as_of: datetime | None = None  # for "in progress"; None: nothing is in progress

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


@dataclass
class FunnelResult:
    spec: FunnelSpec
    accounts: pd.DataFrame  # one row per account that entered: furthest step, status, step times
    steps: pd.DataFrame  # one row per (group, step)
    group_by: str | None = None
    meta: dict = field(default_factory=dict)


def _ns(x: datetime | None) -> int | None:
    return None if x is None else int(pd.Timestamp(x).value)


def per_account(occ: pd.DataFrame, spec: FunnelSpec) -> pd.DataFrame:
    """Furthest step and step timestamps per account (first attempt reaching the furthest)."""
    spec.validate()
    k_steps = len(spec.steps)
    # Nobody entered: an empty frame with the real dtypes, so step times still subtract.
    empty = pd.DataFrame(
        {
            "account_id": pd.Series(dtype=object),
            "furthest": pd.Series(dtype=np.int64),
            **{c: pd.Series(dtype="datetime64[ns]") for c in ["entered_at", "last_start"]},
            **{f"t{k}": pd.Series(dtype="datetime64[ns]") for k in range(k_steps)},
        }
    )
    occ = occ[occ["name"].isin(set(spec.steps))]
    if occ.empty:
        return empty
    codes, uniques = pd.factorize(occ["account_id"], sort=True)
    key = (codes.astype(np.int64) << RANK_BITS) + occ["rank"].to_numpy(np.int64)
    ts = pd.to_datetime(occ["ts"]).to_numpy("datetime64[ns]").astype(np.int64)
    names = occ["name"].to_numpy()
    order = np.argsort(key, kind="stable")
    key, ts, names, codes = key[order], ts[order], names[order], codes[order]
    window = np.int64(spec.window_seconds) * 1_000_000_000

    # Sorted (key, ts) arrays of the occurrences of each distinct step name.
    by_name: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n in set(spec.steps):
        m = names == n
        by_name[n] = (key[m], ts[m])

    lo = _ns(spec.entry_from)
    hi = _ns(spec.entry_to)

    if spec.mode == "unordered":
        start_mask = np.ones(len(key), dtype=bool)
    else:
        start_mask = names == spec.steps[0]
    if lo is not None:
        start_mask &= ts >= lo
    if hi is not None:
        start_mask &= ts <= hi
    s_key, s_ts, s_acc = key[start_mask], ts[start_mask], codes[start_mask]
    if len(s_key) == 0:
        return empty

    n_starts = len(s_key)
    times = np.full((n_starts, k_steps), np.iinfo(np.int64).min, dtype=np.int64)
    NONE = np.iinfo(np.int64).min

    if spec.mode in ("ordered", "strict"):
        times[:, 0] = s_ts
        cur = s_key.copy()
        alive = np.ones(n_starts, dtype=bool)
        reached = np.ones(n_starts, dtype=np.int64)
        for k in range(1, k_steps):
            kk, kt = by_name[spec.steps[k]]
            if len(kk) == 0:
                break
            if spec.mode == "strict":
                pos = np.searchsorted(kk, cur + 1, side="left")
                inb = pos < len(kk)
                posc = np.minimum(pos, len(kk) - 1)
                ok = inb & (kk[posc] == cur + 1)
            else:
                pos = np.searchsorted(kk, cur, side="right")
                inb = pos < len(kk)
                posc = np.minimum(pos, len(kk) - 1)
                ok = inb & ((kk[posc] >> RANK_BITS) == (cur >> RANK_BITS))
            ok &= (kt[posc] - s_ts) <= window
            ok &= alive
            cur = np.where(ok, kk[posc], cur)
            times[:, k] = np.where(ok, kt[posc], NONE)
            alive = ok
            reached += ok
            if not alive.any():
                break
    else:
        # Unordered: from each anchor, the first occurrence of each step at or after it.
        first = np.full((n_starts, k_steps), NONE, dtype=np.int64)
        for k, n in enumerate(spec.steps):
            kk, kt = by_name[n]
            if len(kk) == 0:
                continue
            pos = np.searchsorted(kk, s_key, side="left")
            inb = pos < len(kk)
            posc = np.minimum(pos, len(kk) - 1)
            ok = inb & ((kk[posc] >> RANK_BITS) == (s_key >> RANK_BITS)) & ((kt[posc] - s_ts) <= window)
            first[:, k] = np.where(ok, kt[posc], NONE)
        reached = (first != NONE).sum(axis=1)
        # Distinct steps in the order they were reached.
        srt = np.sort(np.where(first == NONE, np.iinfo(np.int64).max, first), axis=1)
        times = np.where(srt == np.iinfo(np.int64).max, NONE, srt)

    # Per account: furthest step; ties -> earliest attempt.
    frame = pd.DataFrame({"acc": s_acc, "reached": reached, "skey": s_key, "sts": s_ts})
    last_start = frame.groupby("acc")["sts"].max()
    frame = frame.sort_values(["acc", "reached", "skey"], ascending=[True, False, True], kind="stable")
    best = frame.drop_duplicates("acc", keep="first")
    idx = best.index.to_numpy()
    out = pd.DataFrame({"account_id": uniques[best["acc"].to_numpy()], "furthest": best["reached"].to_numpy()})
    chosen = times[idx]
    out["entered_at"] = pd.to_datetime(chosen[:, 0])
    out["last_start"] = pd.to_datetime(last_start.loc[best["acc"].to_numpy()].to_numpy())
    for k in range(k_steps):
        col = chosen[:, k]
        out[f"t{k}"] = pd.to_datetime(np.where(col == NONE, np.datetime64("NaT"), col.astype("datetime64[ns]")))
    return out.reset_index(drop=True)


def _status(acc: pd.DataFrame, spec: FunnelSpec) -> pd.Series:
    k_steps = len(spec.steps)
    converted = acc["furthest"] >= k_steps
    if spec.as_of is None:
        open_ = pd.Series(False, index=acc.index)
    else:
        window = pd.Timedelta(seconds=spec.window_seconds)
        open_ = (acc["last_start"] + window) > pd.Timestamp(spec.as_of)
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
    """The funnel: per-account results and the step table (per group with a breakdown)."""
    acc = per_account(occ, spec)
    acc["status"] = _status(acc, spec) if len(acc) else pd.Series(dtype=object)
    if group_by:
        if attributes is None or group_by not in attributes.columns:
            raise ValueError(f"cannot break down by {group_by!r}: not an account attribute")
        groups = attributes.set_index("account_id")[group_by]
        acc["group"] = acc["account_id"].map(groups).fillna("(none)").astype(str)
        parts = []
        for g, part in acc.groupby("group", sort=True):
            t = step_table(part, spec)
            t.insert(0, "group", g)
            parts.append(t)
        steps = pd.concat(parts, ignore_index=True) if parts else step_table(acc, spec).assign(group=None).iloc[0:0]
    else:
        steps = step_table(acc, spec)
    return FunnelResult(spec=spec, accounts=acc, steps=steps, group_by=group_by)


def journeys_to_occurrences(journeys: dict[str, list[tuple[str, str]]], steps: list[str] | None = None) -> pd.DataFrame:
    """Account journeys {account: [(event, iso_ts), ...]} -> occurrences with full-stream ranks."""
    rows = []
    for acc, evs in journeys.items():
        for i, (name, ts) in enumerate(evs):
            rows.append(
                (acc, name, pd.Timestamp(ts).tz_localize(None) if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts), i)
            )
    df = pd.DataFrame(rows, columns=["account_id", "name", "ts", "seq"])
    df = df.sort_values(["account_id", "ts", "seq"], kind="stable")
    df["rank"] = df.groupby("account_id").cumcount()
    df = df.drop(columns="seq")
    if steps is not None:
        df = df[df["name"].isin(set(steps))]
    return df.reset_index(drop=True)
