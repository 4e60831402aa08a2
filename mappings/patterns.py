"""IAM ``StringLike`` patterns, the one definition every part of Rolegate uses (docs/configuration.md#patterns).

``*`` matches any run of characters (``/`` included, and none); ``?`` exactly one character;
everything else matches itself, case-sensitively. The matcher, explain and the generated trust
policies all call this module, so a pattern means the same thing everywhere.

Pure functions, no Django.
"""

from __future__ import annotations

from functools import lru_cache

WILDCARDS = frozenset("*?")
MAX_PATTERN_LENGTH = 255

# Characters a pattern may never hold, and why. ``$`` would start an IAM policy variable
# (``${aws:username}``) inside a trust-policy condition; ``:`` separates the fields of a token's
# ``sub`` and appears in no GitLab project path or git ref; control characters and whitespace are
# never part of a path or ref.
_FORBIDDEN = {
    "$": "'$', which IAM would read as the start of a policy variable",
    ":": "':', which never appears in a GitLab project path, ref or environment and separates the fields of 'sub'",
}


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` (IAM StringLike, case-sensitive, whole string).

    A two-pointer glob match that backtracks only to the last ``*``: at most
    len(pattern) x len(value) steps, so a crafted 255-character ref cannot make a pattern with
    many stars take seconds, as a backtracking regular expression would.
    """
    if not has_wildcards(pattern):
        return pattern == value
    p = v = 0
    star = -1  # position in pattern of the last '*' seen
    resume = 0  # position in value that this '*' has swallowed up to
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, v
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == value[v]):
            p += 1
            v += 1
        elif star >= 0:
            resume += 1
            p, v = star + 1, resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def has_wildcards(pattern: str) -> bool:
    return any(char in WILDCARDS for char in pattern)


def literal_prefix(pattern: str) -> str:
    """The characters before the first wildcard: every match starts with them."""
    for index, char in enumerate(pattern):
        if char in WILDCARDS:
            return pattern[:index]
    return pattern


def pattern_problems(pattern: object, *, label: str = "pattern") -> list[str]:
    """Human sentences saying what is wrong with a pattern; empty when it is fine."""
    if not isinstance(pattern, str):
        return [f"{label} must be a string"]
    if pattern == "":
        return [f"{label} must not be empty; use '*' to match anything"]
    problems = []
    if len(pattern) > MAX_PATTERN_LENGTH:
        problems.append(f"{label} is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH} are allowed")
    if pattern != pattern.strip():
        problems.append(f"{label} has leading or trailing whitespace, which no GitLab value has")
    elif any(char.isspace() for char in pattern):
        problems.append(f"{label} contains whitespace, which no GitLab project path or ref has")
    if any(ord(char) < 32 or ord(char) == 127 for char in pattern):
        problems.append(f"{label} contains a control character")
    beyond = sorted({char for char in pattern if ord(char) > 0xFF})
    if beyond:
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
        problems.append(
            f"{label} contains {''.join(beyond)!r}: IAM policies hold only Latin-1 characters "
            "(up to U+00FF), so the trust policy could not be written; use '?' or '*' in its place"
        )
    for char, why in _FORBIDDEN.items():
        if char in pattern:
            problems.append(f"{label} contains {why}")
    if "**" in pattern:
        problems.append(f"{label} contains '**', which means the same as '*' here; write '*'")
    return problems


def subsumes(general: str, specific: str) -> bool:
    """Whether every string matched by ``specific`` is also matched by ``general``.

    Sound, not complete: treat ``specific`` as a string over the alphabet plus two symbols
    (``*`` = any run, ``?`` = any one character) and ask whether ``general`` matches it, where a
    ``?`` in ``general`` may consume a ``?`` of ``specific`` and a ``*`` of ``general`` may consume
    anything. A literal in ``general`` only matches the same literal. ``True`` is always right;
    an exotic equivalence (``?*`` covers ``*?``) may answer ``False``, which only costs bytes.
    """
    return _subsumes(general, specific)


@lru_cache(maxsize=65536)
def _subsumes(general: str, specific: str) -> bool:
    # Dynamic programming over (i, j): general[i:] covers specific[j:].
    n, m = len(general), len(specific)
    reach = [[False] * (m + 1) for _ in range(n + 1)]
    reach[n][m] = True
    for i in range(n - 1, -1, -1):
        g = general[i]
        for j in range(m, -1, -1):
            if g == "*":
                # '*' matches nothing (i+1, j) or swallows one more symbol of specific (i, j+1).
                reach[i][j] = reach[i + 1][j] or (j < m and reach[i][j + 1])
            elif j < m:
                s = specific[j]
                if g == "?":
                    reach[i][j] = s != "*" and reach[i + 1][j + 1]
                else:
                    reach[i][j] = s == g and reach[i + 1][j + 1]
    return reach[0][0]
