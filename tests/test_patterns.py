"""IAM StringLike semantics of the shared pattern module (docs/configuration.md#patterns)."""

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import patterns

ALPHABET = "ab/-.*?"
plain = st.text(alphabet="ab/-.", max_size=8)
pattern_text = st.text(alphabet=ALPHABET, max_size=8)


def reference_match(pattern: str, value: str) -> bool:
    """An independent oracle: a backtracking matcher written from the IAM definition."""

    def go(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(value)
        if pattern[i] == "*":
            return any(go(i + 1, k) for k in range(j, len(value) + 1))
        if j == len(value):
            return False
        if pattern[i] == "?" or pattern[i] == value[j]:
            return go(i + 1, j + 1)
        return False

    return go(0, 0)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("platform/*", "platform/web", True),
        ("platform/*", "platform/sub/group/web", True),  # '*' crosses '/'
        ("platform/*", "platform/", True),  # '*' matches nothing
        ("platform/*", "platform", False),
        ("platform/*", "Platform/web", False),  # case-sensitive
        ("v?.*", "v1.4.0", True),
        ("v?.*", "v10.0", False),  # '?' is exactly one character
        ("main", "main", True),
        ("main", "mainline", False),
        ("release-[0-9]", "release-[0-9]", True),  # brackets are literal in StringLike
        ("release-[0-9]", "release-1", False),
        ("a.b", "axb", False),  # '.' is literal
        ("*", "", True),
    ],
)
def test_stringlike_examples(pattern, value, expected):
    assert patterns.matches(pattern, value) is expected


@given(pattern_text, plain)
def test_matches_agrees_with_reference(pattern, value):
    assert patterns.matches(pattern, value) == reference_match(pattern, value)


@given(plain)
def test_literal_pattern_matches_only_itself(value):
    assert patterns.matches(value, value)
    assert not patterns.matches(value, value + "x")


@given(pattern_text, plain)
def test_every_match_starts_with_the_literal_prefix(pattern, value):
    if patterns.matches(pattern, value):
        assert value.startswith(patterns.literal_prefix(pattern))


@given(pattern_text, pattern_text, plain)
def test_subsumes_is_sound(general, specific, value):
    if patterns.subsumes(general, specific) and patterns.matches(specific, value):
        assert patterns.matches(general, value)


@pytest.mark.parametrize(
    ("general", "specific", "expected"),
    [
        ("platform/*", "platform/web", True),
        ("platform/*", "platform/*/api", True),
        ("*", "anything?*", True),
        ("platform/web", "platform/*", False),
        ("v?", "v*", False),
        ("v*", "v?", True),
    ],
)
def test_subsumes_examples(general, specific, expected):
    assert patterns.subsumes(general, specific) is expected


def test_fnmatch_would_differ_on_brackets():
    # Why we do not use fnmatch: it treats [...] as a character class, IAM does not.
    assert fnmatch.fnmatchcase("release-1", "release-[0-9]")
    assert not patterns.matches("release-[0-9]", "release-1")


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "must not be empty"),
        (" main", "whitespace"),
        ("ma in", "whitespace"),
        ("main\x00", "control character"),
        ("${aws:username}", "policy variable"),
        ("group:project", "':'"),
        ("platform/**", "'**'"),
        ("x" * 256, "at most 255"),
        (42, "must be a string"),
        ("功能/*", "Latin-1"),  # IAM policy documents hold only U+0009..U+00FF
    ],
)
def test_pattern_problems_explain_bad_patterns(pattern, fragment):
    problems = patterns.pattern_problems(pattern)
    assert problems, pattern
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize("pattern", ["*", "platform/*", "v?.?.*", "feature/*", "main", "prod-eu-1", "café/ü*"])
def test_good_patterns_have_no_problems(pattern):
    assert patterns.pattern_problems(pattern) == []


def test_whole_string_is_matched():
    assert not patterns.matches("a", "ba")
    assert not patterns.matches("a*", "ba")
    assert not patterns.matches("*a", "ab")


def test_many_stars_against_a_long_hostile_ref_stay_linear():
    """Found in review: with the backtracking regular expression this used to be, these two calls
    ran for minutes (n^stars); the glob matcher does at most len(pattern) x len(value) steps."""
    value = "-" * 254 + "y"
    assert not patterns.matches("*-*-*-*-*-*-main", value)
    assert patterns.matches("*-*-*-*-*-*-y", value)
