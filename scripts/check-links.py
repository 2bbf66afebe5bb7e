#!/usr/bin/env python3
"""Fails on a broken relative link in the README, the CHANGELOG, the book and examples' READMEs.

A link is `[text](target)` or `![alt](target)` outside code blocks and code spans. A target that
is not a URL must name a file or folder that exists, relative to the page; its `#anchor`, on a
Markdown page, must be one of that page's headings as GitHub and mdBook spell them (lower case,
spaces as `-`, other punctuation dropped). Usage: scripts/check-links.py [FILE.md ...]
"""
import glob
import os
import re
import sys

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text):
    """The page without its fenced code blocks and code spans."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    for line in prose(open(path, encoding="utf-8").read()).split("\n"):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        base = slug(re.sub(r"`", "", match.group(1)))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def headings_of(path):
    # Code spans count in headings: `[pool.scaling]` is spelled pool.scaling's letters.
    found = set()
    for line in open(path, encoding="utf-8").read().split("\n"):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            found.add(slug(match.group(1).replace("`", "")))
    return found | anchors(path)


def check(page):
    problems = []
    text = prose(open(page, encoding="utf-8").read())
    for number, line in enumerate(text.split("\n"), 1):
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL: not checked offline
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
            if not os.path.exists(resolved):
                problems.append(f"{page}:{number}: `{target}`: no such file `{resolved}`")
                continue
            if anchor and resolved.endswith(".md") and anchor not in headings_of(resolved):
                problems.append(f"{page}:{number}: `{target}`: no heading `#{anchor}` in `{resolved}`")
    return problems


def main():
    pages = sys.argv[1:] or (
        ["README.md", "CHANGELOG.md", "examples/traces/README.md"] + sorted(glob.glob("docs/src/*.md"))
    )
    problems = [problem for page in pages for problem in check(page)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} broken link(s)")
    print(f"links: {len(pages)} page(s), none broken")


if __name__ == "__main__":
    main()
