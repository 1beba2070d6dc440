"""Defaults from the seed articles: milestones, health model, risk rules, checklist template."""

from __future__ import annotations

from typing import Any

# Phases from the seed: 1 Kickoff and Planning, 2 Technical Implementation,
# 3 User Enablement and Training, 4 Initial Value Realization, 5 Handoff.
PHASES = {
    1: "Kickoff and planning",
    2: "Technical implementation",
    3: "User enablement and training",
    4: "Initial value realization",
    5: "Handoff to ongoing success",
}

# Target day after contract start, per segment. Onboarding length follows the seed:
# SMB 14-30 days, Mid-Market 30-60 (TTFV < 30), Enterprise 60-90, Strategic 90-120.
DEFAULT_MILESTONES: list[dict[str, Any]] = [
    {
        "key": "kickoff_complete",
        "name": "Kickoff complete",
        "phase": 1,
        "order": 1,
        "is_value": False,
        "target_days": {"SMB": 3, "Mid-Market": 5, "Enterprise": 7, "Strategic": 10},
    },
    {
        "key": "technical_setup_done",
        "name": "Technical setup done",
        "phase": 2,
        "order": 2,
        "is_value": False,
        "target_days": {"SMB": 7, "Mid-Market": 14, "Enterprise": 30, "Strategic": 45},
    },
    {
        "key": "training_completed",
        "name": "Training completed",
        "phase": 3,
        "order": 3,
        "is_value": False,
        "target_days": {"SMB": 10, "Mid-Market": 21, "Enterprise": 45, "Strategic": 60},
    },
    {
        "key": "first_value_achieved",
        "name": "First value achieved",
        "phase": 4,
        "order": 4,
        "is_value": True,
        "target_days": {"SMB": 14, "Mid-Market": 28, "Enterprise": 60, "Strategic": 75},
    },
    {
        "key": "adoption_confirmed",
        "name": "Adoption confirmed",
        "phase": 4,
        "order": 5,
        "is_value": True,
        "target_days": {"SMB": 21, "Mid-Market": 45, "Enterprise": 75, "Strategic": 100},
    },
    {
        "key": "onboarding_concluded",
        "name": "Onboarding concluded",
        "phase": 5,
        "order": 6,
        "is_value": False,
        "target_days": {"SMB": 30, "Mid-Market": 60, "Enterprise": 90, "Strategic": 120},
    },
]

FIRST_VALUE_MILESTONE = "first_value_achieved"
COMPLETION_MILESTONE = "onboarding_concluded"

# The seed's onboarding health scoring model.
DEFAULT_HEALTH_MODEL: dict[str, Any] = {
    "weights": {"milestone": 30, "adoption": 25, "engagement": 25, "value": 20},
    # Lower bound of each band; below at_risk is Critical.
    "bands": {"excellent": 80, "on_track": 60, "at_risk": 40},
    # User adoption: active end-users in the window over licensed seats; 80 %+ = full points.
    "adoption_window_days": 14,
    "adoption_full_share": 0.8,
    # Engagement quality: days in the window with activity. "Daily use" means every
    # working day, so 10 active days of 14 (5 in 7) earns full points.
    "engagement_window_days": 14,
    "engagement_full_days": 10,
    # Milestones completed after their due date earn this share of their points.
    "late_credit": 0.5,
    # The first N days after contract start an account is too early to score: it is kept
    # off the at-risk count and the attention list unless a new-account trigger fires.
    "new_account_days": 14,
}

DEFAULT_RISK_RULES: dict[str, Any] = {
    "milestone_overdue": {"enabled": True, "days": 7},
    "no_activity": {"enabled": True, "days": 14},
    "low_adoption": {"enabled": True, "day": 30, "threshold": 0.5},
    "health_drop": {"enabled": True, "points": 15, "days": 14},
    "no_champion": {"enabled": True, "day": 14},
    "ttfv_overdue": {"enabled": True, "grace_days": 0},
}

# The seed's success criteria and completion checklist. `metric` binds an item to a
# value computed from events (metrics/checklist.py).
DEFAULT_CHECKLIST: list[dict[str, Any]] = [
    {"category": "Technical Setup", "criterion": "All data sources connected", "target": "100%", "metric": None},
    {"category": "Technical Setup", "criterion": "Data validation completed", "target": "100%", "metric": None},
    {
        "category": "Technical Setup",
        "criterion": "User accounts provisioned",
        "target": "100%",
        "metric": "users_provisioned_pct",
    },
    {"category": "User Adoption", "criterion": "Admins trained", "target": "2+", "metric": "admins_trained"},
    {"category": "User Adoption", "criterion": "Analysts trained", "target": "5+", "metric": "analysts_trained"},
    {
        "category": "User Adoption",
        "criterion": "Active weekly users",
        "target": "80%+",
        "metric": "weekly_active_users_pct",
    },
    {
        "category": "Value Realization",
        "criterion": "Custom dashboards created",
        "target": "3+",
        "metric": "dashboards_created",
    },
    {
        "category": "Value Realization",
        "criterion": "Insights shared with leadership",
        "target": "2+",
        "metric": "reports_shared",
    },
    {"category": "Value Realization", "criterion": "Data-driven decisions influenced", "target": "1+", "metric": None},
    {"category": "Engagement", "criterion": "Customer satisfaction score", "target": "8+/10", "metric": None},
    {"category": "Engagement", "criterion": "Champion identified", "target": "Yes", "metric": None},
    {"category": "Engagement", "criterion": "Expansion opportunity identified", "target": "Yes", "metric": None},
]

DEFAULT_CHECKLIST_TEMPLATES: dict[str, Any] = {"default": DEFAULT_CHECKLIST}

# What a play's step delivers: the seed's interventions.
DELIVERABLES = (
    "extra training",
    "executive sponsorship",
    "enhanced support",
    "setup workshop",
    "activation email",
    "feature-adoption sprint",
)

# Who owns a step: the account's CSM, the team's leader, a named member ("member:<email>"),
# or a CSM picked in turn ("round robin") or the one with the fewest open tasks ("least
# loaded"), among the CSMs who own accounts in the account's segment.
OWNER_KINDS = ("csm", "leader", "round robin", "least loaded")


def _step(title: str, deliver: str, due_days: int, owner: str = "csm") -> dict[str, Any]:
    return {"title": title, "deliver": deliver, "owner": owner, "due_days": due_days}


# One playbook per default risk rule, and a kickoff play on contract start. A trigger is a
# risk rule's key, or "contract_start" (fires the first `within_days` days of a contract).
# A play closes itself when its trigger has not fired for `auto_resolve_days` days.
_PLAYBOOKS: list[dict[str, Any]] = [
    {
        "key": "kickoff",
        "name": "Kickoff",
        "enabled": True,
        "trigger": {"rule": "contract_start", "within_days": 14},
        "auto_resolve_days": None,
        "steps": [
            _step("Send the welcome and activation email", "activation email", 0),
            _step("Hold the kickoff call and agree the success criteria", "setup workshop", 3),
            _step("Confirm the executive sponsor", "executive sponsorship", 7),
        ],
    },
    {
        "key": "milestone_overdue",
        "name": "Overdue milestone recovery",
        "enabled": True,
        "trigger": {"rule": "milestone_overdue"},
        "auto_resolve_days": 7,
        "steps": [
            _step("Call the customer about the overdue milestone and agree a new date", "enhanced support", 2),
            _step("Run a setup workshop for what blocks the milestone", "setup workshop", 7),
        ],
    },
    {
        "key": "no_activity",
        "name": "Re-engage a silent account",
        "enabled": True,
        "trigger": {"rule": "no_activity"},
        "auto_resolve_days": 7,
        "steps": [
            _step("Reach the champion: why has usage stopped?", "enhanced support", 1),
            _step("Send the activation email to the users who never started", "activation email", 3),
        ],
    },
    {
        "key": "low_adoption",
        "name": "Adoption sprint",
        "enabled": True,
        "trigger": {"rule": "low_adoption"},
        "auto_resolve_days": 14,
        "steps": [
            _step("Role-based training for users who have not activated", "extra training", 5),
            _step("Two-week feature-adoption sprint with the champion", "feature-adoption sprint", 14),
        ],
    },
    {
        "key": "health_drop",
        "name": "Health drop escalation",
        "enabled": True,
        "trigger": {"rule": "health_drop"},
        "auto_resolve_days": 14,
        "steps": [
            _step("Review the health breakdown and the account's recent activity", "enhanced support", 1),
            _step("Escalate to the executive sponsor and reset goals", "executive sponsorship", 5, "leader"),
        ],
    },
    {
        "key": "no_champion",
        "name": "Find a champion",
        "enabled": True,
        "trigger": {"rule": "no_champion"},
        "auto_resolve_days": 7,
        "steps": [
            _step("Ask the sponsor to name a champion", "executive sponsorship", 3),
            _step("Onboard the champion: admin training", "extra training", 10),
        ],
    },
    {
        "key": "ttfv_overdue",
        "name": "First value rescue",
        "enabled": True,
        "trigger": {"rule": "ttfv_overdue"},
        "auto_resolve_days": 7,
        "steps": [
            _step("Implementation specialist session toward the first dashboard", "enhanced support", 3),
            _step("Weekly check-in until first value", "enhanced support", 10),
        ],
    },
]
# Stored keyed by playbook (the change log then names the playbook and field that changed).
DEFAULT_PLAYBOOKS: dict[str, dict[str, Any]] = {
    p["key"]: {k: v for k, v in p.items() if k != "key"} for p in _PLAYBOOKS
}

# Expected ranges of the Portfolio KPIs: outside them, an alert (services/notify.py).
DEFAULT_ALERTS: dict[str, Any] = {
    # Onboarding completion (recent deadlines met) under this share.
    "completion_min": 0.85,
    # Share of live accounts at risk up by more than this many points on last week.
    "at_risk_rise_points": 5,
    # A segment's median days to first value over its target by more than this many days.
    "ttfv_over_target_days": 0,
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "health_model": DEFAULT_HEALTH_MODEL,
    "risk_rules": DEFAULT_RISK_RULES,
    "checklist_templates": DEFAULT_CHECKLIST_TEMPLATES,
    "analysis": {"week_start": "sunday"},
    "playbooks": DEFAULT_PLAYBOOKS,
    "alerts": DEFAULT_ALERTS,
}
