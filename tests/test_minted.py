"""What a minted token says (mappings.minted): the role-bound sub, and session tags that carry a
claim's exact value or nothing."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import minted, patterns

# Every character Python's \s (or str.isspace) accepts that AWS's tag set does not: it holds the
# Unicode separators (Z*) only, so these control characters (Cc) make STS refuse the token.
DISALLOWED_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85"


def test_every_python_whitespace_outside_the_separators_is_exactly_the_disallowed_list():
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\s", chr(c))}
    assert {c for c in spaces if unicodedata.category(c)[0] != "Z"} == set(DISALLOWED_WHITESPACE)


@pytest.mark.parametrize("char", list(DISALLOWED_WHITESPACE), ids=lambda c: f"U+{ord(c):04X}")
def test_no_tag_value_holds_whitespace_that_aws_refuses(char):
    value = f"prod{char}eu"
    assert not minted.taggable(value)
    claims = {"environment": value, "ref": f"main{char}", "project_path": "platform/web"}
    tags = minted.principal_tags(claims, "web-main")
    assert "environment" not in tags and "ref" not in tags
    assert tags["project_path"] == ["platform/web"]
    assert minted.untaggable_pattern_chars(f"prod{char}*") == char


@pytest.mark.parametrize(
    "value",
    [
        "",
        "production",
        "review/ü 1",  # letters of any script, a plain space
        "prod\u00a0eu\u2028x\u3000y",  # NBSP, LINE SEPARATOR, IDEOGRAPHIC SPACE: category Z
        "ⅻ٣²",  # numbers of category Nl, Nd, No
        "a_b.c:d/e=f+g-h@i",
        "x" * 256,
    ],
)
def test_values_in_the_tag_character_set_are_tagged_exactly(value):
    assert minted.taggable(value)
    assert minted.principal_tags({"environment": value}, "m")["environment"] == [value]


@pytest.mark.parametrize(
    "value",
    ["prod{eu", "prod{eu}", "$x", "a#b", "a!b", "a~b", "a*b", "a?b", "a,b", "e\u0301", "\ud800", "x" * 257, None, 1],
)
def test_values_outside_the_tag_character_set_or_too_long_get_no_tag(value):
    assert not minted.taggable(value)
    assert "environment" not in minted.principal_tags({"environment": value}, "m")


def test_the_tags_claim_lists_only_the_tags_it_carries():
    claim = minted.session_tags_claim({"environment": "prod{eu", "ref": "main", "ref_protected": "true"}, "m")
    assert claim == {
        "principal_tags": {"ref": ["main"], "ref_protected": ["true"], "mapping": ["m"]},
        "transitive_tag_keys": ["mapping", "ref", "ref_protected"],
    }


@given(st.text(max_size=300))
def test_a_tag_value_is_the_claim_itself_and_fits_aws(value):
    tags = minted.principal_tags({"environment": value}, "m")
    if "environment" in tags:
        assert tags["environment"] == [value]
        assert len(value) <= 256
        assert all(c in "_.:/=+-@" or unicodedata.category(c)[0] in "LZN" for c in value)


def test_sub_begins_with_the_job_and_ends_with_the_role():
    sub = minted.minted_sub("gitlab-com", "platform/web", "branch", "main", account_id="123456789012", role_name="x")
    assert sub == "gitlab-com:project_path:platform/web:ref_type:branch:ref:main:role:123456789012/x"
    assert sub.endswith(minted.role_binding("123456789012", "x"))


ROLE_NAME = st.text(alphabet="abAB01_+=,.@-", min_size=1, max_size=8)
ACCOUNT = st.sampled_from(["111111111111", "222222222222"])
PATTERN = st.text(alphabet="ab:/*?{", min_size=1, max_size=8).filter(lambda p: "**" not in p)


@given(
    prefix_pattern=PATTERN,
    value=st.text(alphabet="ab:/{", max_size=10),
    a=st.tuples(ACCOUNT, ROLE_NAME),
    b=st.tuples(ACCOUNT, ROLE_NAME),
)
def test_a_pattern_ending_with_one_role_never_matches_a_sub_of_another(prefix_pattern, value, a, b):
    """The argument behind role binding, for any wildcards before the suffix and any ':' in the
    value: the suffix's last ':' pins where the role starts."""
    pattern = prefix_pattern + minted.role_binding(*a)
    sub = value + minted.role_binding(*b)
    if patterns.matches(pattern, sub):
        assert a == b


def test_every_ascii_character_is_taggable_exactly_when_its_category_says_so():
    """The ASCII shortcut of ``taggable`` agrees with the per-character definition on all 128."""
    for code in range(128):
        assert minted.taggable(chr(code)) == minted.tag_char(chr(code)), repr(chr(code))


@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=300), st.text(max_size=300)))
def test_taggable_is_its_definition(value):
    """At most 256 characters, each in the tag character set: whichever path ``taggable`` takes."""
    expected = len(value) <= minted.MAX_TAG_VALUE_LENGTH and all(minted.tag_char(c) for c in value)
    assert minted.taggable(value) == expected


@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60), st.text(max_size=60)))
def test_untaggable_pattern_chars_is_its_definition(pattern):
    """The characters no tag value can hold, wildcards aside, each once and in order: whichever
    path the function takes (one regex for ASCII patterns)."""
    expected = "".join(dict.fromkeys(c for c in pattern if c not in "*?" and not minted.tag_char(c)))
    assert minted.untaggable_pattern_chars(pattern) == expected
