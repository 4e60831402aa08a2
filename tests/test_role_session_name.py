"""docs/api.md#role-session-name: ``gl-<project_id>-<job_id>``, every character outside STS's
``[\\w+=,.@-]`` replaced by ``_``, at most 64 characters. STS's ``\\w`` is ASCII (letters, digits,
underscore): a Unicode letter or digit that Python's ``\\w`` would keep makes STS refuse the call."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mappings.minted import role_session_name

STS_ROLE_SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")


def test_gitlabs_digit_ids_are_kept_as_they_are():
    assert role_session_name("20", "302") == "gl-20-302"


def test_unicode_letters_and_digits_are_replaced():
    assert role_session_name("20", "ünï") == "gl-20-_n_"
    assert role_session_name("２０", "302") == "gl-__-302"  # fullwidth digits are not ASCII digits


@given(project_id=st.text(max_size=80), job_id=st.text(max_size=80))
def test_every_name_is_a_valid_sts_role_session_name(project_id, job_id):
    assert STS_ROLE_SESSION_NAME.fullmatch(role_session_name(project_id, job_id))
