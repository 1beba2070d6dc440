"""What the router worked out for this run: the user, the filters, the as-of date."""

from __future__ import annotations

from datetime import date

import streamlit as st

from components.filters import as_of as _as_of
from services.access import User, demo_admin
from services.analytics import Filters


def user() -> User:
    return st.session_state.get("_user") or demo_admin()


def filters() -> Filters:
    return st.session_state.get("_filters") or Filters()


def as_of() -> date:
    return _as_of()
