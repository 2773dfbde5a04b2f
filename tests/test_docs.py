"""The README is a short front page, and every link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target up to a space or ')'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def local_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code is not a link
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


def test_the_readme_is_a_front_page_of_at_most_12_kb() -> None:
    assert README.stat().st_size <= 12 * 1024


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_local_link_resolves(page: Path) -> None:
    broken = [t for t in local_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert broken == [], f"{page.relative_to(REPO)} links to missing files: {broken}"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in local_links(README)}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")}
    assert pages - linked == set(), "docs pages the README does not link"
