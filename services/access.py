"""Who may do what (PRODUCT.md §6), enforced here, not only in the UI.

leader, revops: read everything. csm: read everything, edit only the accounts they own.
admin: edit everything, import data, change settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from db.models import Account, TeamMember

DEMO_ADMIN_EMAIL = "demo-admin@localhost"


@dataclass(frozen=True)
class User:
    email: str
    name: str
    role: str
    member_id: int | None = None
    mode: str = "demo"  # demo | oidc | header

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class PermissionDenied(Exception):
    """The signed-in user may not do this."""


class NotInTeam(Exception):
    """A signed-in identity that is not a member of the team."""


def demo_admin() -> User:
    return User(email=DEMO_ADMIN_EMAIL, name="Demo admin", role="admin", member_id=None, mode="demo")


def user_for_email(session: Session, email: str, *, mode: str) -> User:
    """The team member with this email (case-insensitive), or NotInTeam."""
    email = (email or "").strip().lower()
    m = session.exec(select(TeamMember).where(TeamMember.email == email)).first()
    if m is None or not m.active:
        raise NotInTeam(email)
    return User(email=m.email, name=m.name, role=m.role, member_id=m.id, mode=mode)


def can_edit_account(user: User, account: Account) -> bool:
    if user.role == "admin":
        return True
    return user.role == "csm" and user.member_id is not None and account.csm_id == user.member_id


def can_act_on_plays(user: User, account: Account) -> bool:
    """Plays and tasks (as interventions): a CSM on their own accounts, leaders and admins on all."""
    return user.role == "leader" or can_edit_account(user, account)


def require_account_edit(session: Session, user: User, account_id: int, *, plays: bool = False) -> Account:
    """The account, if the user may edit it (plays=True: act on its plays and tasks, which
    leaders may too); PermissionDenied otherwise."""
    account = session.get(Account, account_id)
    if account is None:
        raise KeyError(f"no account with id {account_id}")
    if not (can_act_on_plays if plays else can_edit_account)(user, account):
        who = "its CSM, a leader or an admin can act on its plays" if plays else "its CSM or an admin can change it"
        if user.role == "csm":
            raise PermissionDenied(f"{user.email} is not the CSM of {account.external_id}; only {who}")
        what = "plays and tasks but not act on them" if plays else "accounts but not change them"
        raise PermissionDenied(f"the {user.role} role can read {what}")
    return account


def require_admin(user: User, action: str) -> None:
    if user.role != "admin":
        raise PermissionDenied(f"only admins can {action}; you are signed in as {user.role}")
