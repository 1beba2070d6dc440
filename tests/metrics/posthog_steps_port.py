"""An independent Python port of PostHog's ordered/strict funnel engine, for tests only.

Transliterated from PostHog/posthog `funnel-udf/src/steps.rs` (AggregateFunnelRow:
loop_prop_val, process_event) and the parts of
`posthog/hogql_queries/insights/funnels/funnel_udf.py` and `base.py` that build its input:
the per-event step vector `[1*step_0, 2*step_1, ...] + [-(i+1)*exclusion_i ...]` (zeros
dropped), exclusion_i set for 0-based steps i in (funnelFromStep, funnelToStep], and
`prop_vals` per breakdown attribution (first_touch: argMinIf(prop, timestamp, prop set);
last_touch: argMaxIf; step_N: groupUniqArray of the value on step-N events). Optional
steps are not ported (the dashboard has none). It keeps steps.rs's shape on purpose
(mutable EnteredTimestamp records, float seconds, uuids, 0.0 as "unset") so that it shares
no code and no data layout with metrics/funnel.py.

Conventions of the callers (the dashboard's, applied to both sides the same way): steps and
exclusion ranges are 1-based here; a step-1 event outside the entry range cannot start the
funnel (its 1 is dropped from its vector); ties in first/last touch go to the smallest value.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from itertools import groupby


@dataclass
class EnteredTimestamp:
    timestamp: float = 0.0
    excluded: bool = False
    timings: list[float] = field(default_factory=list)
    uuids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Event:
    timestamp: float
    uuid: uuid.UUID
    breakdown: object
    steps: list[int]


@dataclass
class PortResult:
    step_reached: int  # 0-based furthest step; -1 = excluded (or never entered)
    breakdown: object
    timings: list[float]  # seconds between consecutive steps of the kept attempt
    timestamps: list[float]  # the kept attempt's step times (epoch seconds)


class AggregateFunnelRow:
    def __init__(self, *, num_steps: int, conversion_window_limit: float, attribution: str, order: str) -> None:
        self.num_steps = num_steps
        self.conversion_window_limit = conversion_window_limit
        self.breakdown_attribution_type = attribution
        self.funnel_order_type = order
        self.breakdown_step: int | None = None
        if attribution.startswith("step_"):
            self.breakdown_step = int(attribution[5:])
        self.results: list[PortResult] = []

    def calculate(self, events: list[Event], prop_vals: list[object]) -> list[PortResult]:
        for prop_val in prop_vals:
            self.loop_prop_val(events, prop_val)
        return self.results

    def loop_prop_val(self, events: list[Event], prop_val: object) -> None:
        self.max_step = (0, EnteredTimestamp())
        self.entered_timestamp = [EnteredTimestamp() for _ in range(self.num_steps + 1)]
        filtered = [e for e in events if self.breakdown_attribution_type != "all_events" or e.breakdown == prop_val]
        for timestamp, same in groupby(filtered, key=lambda e: e.timestamp):
            same = list(same)
            self.entered_timestamp[0] = EnteredTimestamp(timestamp=timestamp)
            if len(same) == 1:
                self.process_event(same[0], prop_val, False)
            elif all(e.steps == same[0].steps for e in same):
                for e in same:
                    self.process_event(e, prop_val, False)
            else:
                flat = [
                    Event(timestamp=e.timestamp, uuid=e.uuid, breakdown=e.breakdown, steps=[s])
                    for e in same
                    for s in e.steps
                    if s > 0
                ]
                flat.sort(key=lambda e: e.steps[0])  # stable, like itertools' sorted_by_key
                for e in flat:
                    self.process_event(e, prop_val, True)
            if self.entered_timestamp[self.num_steps].timestamp > 0.0:
                break
        final_index, final_value = self.max_step
        if final_value.excluded:
            self.results.append(PortResult(-1, prop_val, [], []))
            return
        timings = [b - a for a, b in zip(final_value.timings, final_value.timings[1:], strict=False)]
        self.results.append(PortResult(final_index - 1, prop_val, timings, list(final_value.timings)))

    def process_event(self, event: Event, prop_val: object, processing_multiple_events: bool) -> None:
        for raw in reversed(event.steps):
            exclusion = raw < 0
            step = -raw if exclusion else raw
            previous_step_index = step - 1
            previous_timestamp = self.entered_timestamp[previous_step_index].timestamp
            in_match_window = (
                previous_timestamp != 0.0 and event.timestamp - previous_timestamp <= self.conversion_window_limit
            )
            already_reached_this_step = (
                self.entered_timestamp[step].timestamp == previous_timestamp
                and self.entered_timestamp[step].timestamp != 0.0
            )
            if not (in_match_window and not already_reached_this_step):
                continue
            previous_step = self.entered_timestamp[previous_step_index]
            if exclusion:
                if not previous_step.excluded:
                    self.entered_timestamp[previous_step_index].excluded = True
                    if self.max_step[0] == previous_step_index:
                        if event.timestamp - self.max_step[1].timestamp <= self.conversion_window_limit:
                            self.max_step[1].excluded = True
                continue
            is_unmatched_step_attribution = (
                self.breakdown_step is not None
                and previous_step_index == self.breakdown_step
                and prop_val != event.breakdown
            )
            already_used_event = processing_multiple_events and event.uuid in previous_step.uuids
            if is_unmatched_step_attribution or already_used_event:
                continue
            new = EnteredTimestamp(
                timestamp=previous_step.timestamp,
                excluded=previous_step.excluded,
                timings=[*previous_step.timings, event.timestamp],
                uuids=[*previous_step.uuids, event.uuid],
            )
            if not previous_step.excluded:
                self.entered_timestamp[step] = copy.deepcopy(new)
            if step > self.max_step[0] or (step == self.max_step[0] and self.max_step[1].excluded):
                self.max_step = (step, new)
        if not processing_multiple_events and self.funnel_order_type == "strict":
            for i in range(1, len(self.entered_timestamp)):
                if i not in event.steps:
                    self.entered_timestamp[i] = EnteredTimestamp()


def build_steps(
    name: str, steps: list[str], exclusions: list[tuple[str, int, int]], *, can_start: bool = True
) -> list[int]:
    """funnel_udf.py's step vector for one event (exclusions 1-based (event, from, to))."""
    vec = [(i + 1) * int(name == s) for i, s in enumerate(steps)]
    if exclusions:
        for i in range(1, len(steps)):
            flagged = any(ev == name and frm - 1 < i <= to - 1 for ev, frm, to in exclusions)
            vec.append(-(i + 1) * int(flagged))
    if not can_start:
        vec[0] = 0
    return [x for x in vec if x != 0]


def run_account(
    events: list[tuple[str, float, object]],
    *,
    steps: list[str],
    mode: str,
    window_seconds: float,
    exclusions: list[tuple[str, int, int]] = (),
    attribution: str | None = None,
    entry: tuple[float | None, float | None] = (None, None),
) -> list[PortResult]:
    """One account's events (name, epoch seconds, breakdown value or None) through the port.

    attribution: None (no breakdown), 'first', 'last' or 'step:N' (1-based)."""
    lo, hi = entry
    rows = []
    for name, ts, value in events:
        can_start = (lo is None or ts >= lo) and (hi is None or ts <= hi)
        vec = build_steps(name, steps, list(exclusions), can_start=can_start)
        if mode != "strict" and not vec:
            continue  # the step filter: only step and exclusion events reach the UDF
        rows.append((ts, str(value) if value is not None else None, vec))
    rows.sort(key=lambda r: r[0])  # arraySort by timestamp
    evs = [Event(timestamp=ts, uuid=uuid.uuid4(), breakdown=v, steps=vec) for ts, v, vec in rows]
    kind = "first_touch"
    if attribution is None:
        prop_vals: list[object] = [None]
    elif attribution in ("first", "last"):
        kind = "first_touch" if attribution == "first" else "last_touch"
        # argMinIf/argMaxIf(prop, timestamp, prop is set) over the events of the query.
        seen = [(r[0], r[1]) for r in rows if r[1] is not None and r[2]]
        if seen:
            t = (min if attribution == "first" else max)(ts for ts, _ in seen)
            prop_vals = [min(v for ts, v in seen if ts == t)]
        else:
            prop_vals = [None]
    else:
        n = int(attribution.split(":")[1])
        kind = f"step_{n - 1}"
        vals: list[object] = []
        for r in rows:
            if n in r[2] and r[1] not in vals:
                vals.append(r[1])
        prop_vals = vals  # groupUniqArray: an account without a step-N event gets no row
    agg = AggregateFunnelRow(num_steps=len(steps), conversion_window_limit=window_seconds, attribution=kind, order=mode)
    return agg.calculate(evs, prop_vals)
