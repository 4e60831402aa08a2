"""The reference in docs/ is complete: every reason code, environment variable, command and URL the
code has is documented there, and links between the pages resolve."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from exchange import reasons
from tests.docs_reference import DOCS, ROOT, documented_reasons, section


def test_every_reason_code_is_documented_with_its_error_and_status():
    table = {reason: (error, status) for reason, (error, status, _) in reasons.REASONS.items()}
    assert documented_reasons() == table


def test_every_environment_variable_the_settings_read_is_documented():
    source = (ROOT / "portal" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:bool|int|str|secret|list)\("([A-Z0-9_]+)"', source))
    read |= {f"{name}_FILE" for name in re.findall(r'env_secret\("([A-Z0-9_]+)"', source)}
    assert "ROLEGATE_JWKS_MIN_REFRESH_SECONDS" in read
    text = (DOCS / "environment.md").read_text()

    missing = sorted(name for name in read if f"`{name}`" not in text)
    assert not missing, missing


def test_every_management_command_of_ours_is_documented():
    commands = {path.stem for path in ROOT.glob("*/management/commands/*.py") if not path.stem.startswith("_")}
    assert {"apply", "export", "sync_iam", "audit_export", "rotate_signing_key"} <= commands
    text = (DOCS / "commands.md").read_text()
    missing = sorted(name for name in commands if f"## `{name}`" not in text)
    assert not missing, missing


def _routes(patterns, prefix: str = "") -> list[str]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            found.append(prefix + str(pattern.pattern))
    return found


def test_every_url_of_ours_is_documented():
    routes = _routes(get_resolver().url_patterns)
    ours = [route for route in routes if not route.startswith("admin/") or route.startswith("admin/rolegate/")]
    assert "api/v1/token" in ours
    text = (DOCS / "api.md").read_text()
    missing = sorted(route for route in ours if f"/{route}`" not in text and f"/{route}," not in text)
    assert not missing, missing


@pytest.mark.parametrize(
    ("page", "anchor"),
    [
        ("api.md", "Token exchange"),
        ("api.md", "Credentials"),
        ("api.md", "OIDC discovery and JWKS"),
        ("api.md", "Platform API"),
        ("reasons.md", "Audit reason codes"),
        ("environment.md", "Summary"),
        ("commands.md", "Summary"),
        ("trust-model.md", "Condition by condition"),
        ("trust-model.md", "Taking trust away"),
        ("operations.md", "Failure behaviour"),
        ("configuration.md", "Patterns"),
    ],
)
def test_linked_sections_exist(page, anchor):
    section(page, anchor)


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown page's headings, by GitHub's rules."""
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
    }


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.split()
    if not names:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def text_lines(path: Path):
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return
    yield from enumerate(text.splitlines(), 1)


def test_links_between_docs_point_at_existing_sections():
    """``[text](page.md#anchor)`` links resolve to a heading, by GitHub's anchor rules."""

    broken = []
    for page in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)#([\w-]+)\)", page.read_text()):
            linked = (page.parent / target).resolve() if target else page
            if not linked.exists() or anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken


CODE_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".txt", ".lua", "")


def test_citations_of_docs_in_code_and_tests_point_at_existing_sections():
    """``docs/<page>.md#<anchor>`` in code, tests and configuration names a real page and heading."""
    cited = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
    broken = []
    for path in tracked_files():
        if path.suffix not in CODE_SUFFIXES or path.relative_to(ROOT).parts[0] == "docs":
            continue
        for number, line in text_lines(path):
            for page, anchor in cited.findall(line):
                target = DOCS / page
                if not target.exists() or (anchor and anchor not in anchors(target)):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: docs/{page}#{anchor}")
    assert not broken, "\n".join(broken)


# Built from parts so that this file does not match itself.
_OUTSIDE = re.compile(r"\.\./" + "shared" + "|" + r"(?<![\w.])" + "shared/(?:CONTRACT|fixtures|STYLE|hooks)")
_CITATION = re.compile("CONTRACT" + r"(?:\.md| ?§)")


def test_the_repository_stands_alone():
    """Nothing tracked refers to a path outside the repository or cites sections of an outside
    contract: code, tests and docs cite docs/ sections (other specifications' sections are fine)."""
    offending = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path in tracked_files()
        for number, line in text_lines(path)
        if _OUTSIDE.search(line) or _CITATION.search(line)
    ]
    assert not offending, "\n".join(offending)
