"""The README and ``docs/`` stay true: generated parts current, commands as CI runs them, links alive.

``docs/cli.md`` and the output under every ``$ collsim ...`` line of a ``console`` block are generated
by :mod:`sim.cli_reference`; these tests regenerate them in memory and compare. When they fail, the
message names the command that brings the files up to date.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

import pytest

from sim import cli_reference
from sim.cli_reference import REGENERATE, refresh_console_blocks, render_cli_reference, run_collsim

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 300


def _diff(old: str, new: str, name: str, limit: int = 60) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{name} (committed)",
                                      f"{name} (regenerated)", lineterm="", n=1))
    return "\n".join(lines[:limit] + (["..."] if len(lines) > limit else []))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)]


def _prose(text: str) -> str:
    """The text outside fenced code blocks (links in code are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slugs(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    slugs = set()
    for title in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


# --- generated parts ---------------------------------------------------------------------------


def test_cli_reference_is_current():
    path = DOCS / "cli.md"
    assert path.exists(), f"docs/cli.md is missing; generate it with: {REGENERATE}"
    new = render_cli_reference()
    old = path.read_text()
    assert old == new, f"docs/cli.md is stale; regenerate it with: {REGENERATE}\n{_diff(old, new, 'docs/cli.md')}"


def test_cli_reference_covers_every_command_and_option():
    from sim.cli import build_parser

    parser = build_parser()
    text = render_cli_reference(parser)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert subparsers.choices, "collsim has no subcommands?"
    for name, sub in subparsers.choices.items():
        assert f"## collsim {name}\n" in text, name
        section = text.split(f"## collsim {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if action.help is argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in section or f", {option}" in section, (name, option)


def _pages_with_console_blocks():
    return [p for p in PAGES if p.name != "cli.md" and re.search(r"^```console", p.read_text(), re.M)]


@pytest.mark.parametrize("page", _pages_with_console_blocks(), ids=_rel)
def test_console_outputs_are_current(page):
    # Every command of every console block runs in-process (the simulator on k = 4 fat trees and the
    # checker to p = 32): a few seconds per page.
    old = page.read_text()
    new = refresh_console_blocks(old)
    assert old == new, (f"{_rel(page)}: the output of a 'collsim' command changed; regenerate with: {REGENERATE}\n"
                        f"{_diff(old, new, _rel(page))}")


# --- the README as a landing page ---------------------------------------------------------------


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n < MAX_README_LINES, f"README.md has {n} lines; keep it under {MAX_README_LINES}, move depth to docs/"


def _ci_readme_command() -> str:
    text = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^# --- README: install and test.*?\n(.*?)^# --- end ---", text, re.S | re.M)
    assert m, ".ci/run lost its '# --- README: install and test' ... '# --- end ---' markers"
    lines = [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines, ".ci/run has no command between its README markers"
    return "\n".join(lines) + "\n"


def test_readme_test_command_is_what_ci_runs():
    command = _ci_readme_command()
    blocks = [body for _, body in _fenced_blocks(README.read_text())]
    assert command in blocks, (
        "README.md must show the install-and-test command exactly as .ci/run runs it between its "
        f"README markers, as a code block of its own:\n{command}"
    )


def test_readme_main_job_command():
    blocks = [body for _, body in _fenced_blocks(README.read_text())]
    main_job = "pip install -c constraints.txt -e . && torchrun --nproc_per_node=4 examples/allreduce.py\n"
    assert main_job in blocks
    assert (ROOT / "examples" / "allreduce.py").exists()


def test_readme_links_every_docs_page():
    prose = _prose(README.read_text())
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in prose or f"(docs/{page.name}#" in prose, f"README.md does not link docs/{page.name}"
    assert (ROOT / "LICENSE").exists() and "Apache License" in (ROOT / "LICENSE").read_text()


# --- links, paths, files ------------------------------------------------------------------------


def _links(page: Path):
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())):
        if not re.match(r"[a-z]+:", target):  # not http:, https:, mailto:
            yield target


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in _slugs(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {_rel(file)}")
    assert not broken, f"{_rel(page)}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_paths_of_a_particular_machine(page):
    hits = re.findall(r"(?<![\w.:/])/(?:work|tmp|root|home|Users|opt|mnt|scratch)/[^\s`)]*", page.read_text())
    assert not hits, f"{_rel(page)} names paths of one machine: {sorted(set(hits))}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_scripts_named_in_the_docs_exist(page):
    names = set(re.findall(r"\b((?:examples|benchmarks|tests)/[\w/]+\.py)\b", page.read_text()))
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, f"{_rel(page)} names files that do not exist: {missing}"


# --- the generator itself -----------------------------------------------------------------------


def _toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy", description="A toy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="run | walk", description="Run the toy.")
    p.add_argument("spec", help="what to run")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--mode", choices=("a", "b"), default="a", help="mode (default %(default)s)")
    p.add_argument("--size", required=True, metavar="BYTES", help="how much")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="check it")
    p.add_argument("--secret", help=argparse.SUPPRESS)
    sub.add_parser("stop", help="stop it")
    return parser


def test_render_a_parser():
    text = render_cli_reference(_toy_parser())
    assert text.startswith("# `toy` command-line reference\n")
    assert "| [`run`](#toy-run) | run \\| walk |" in text and "| [`stop`](#toy-stop) | stop it |" in text
    assert "usage: toy run spec [FILE ...] [--mode {a,b}] --size BYTES [--check]" in text
    assert "| `--mode` | `{a,b}` | `a` | mode (default a) |" in text
    assert "| `--size` | `BYTES` |  | **required.** how much |" in text
    assert "| `--check, --no-check` |  |  | check it |" in text
    assert "--secret" not in text
    assert "## toy stop" in text and text.endswith("\n") and not text.endswith("\n\n")


def test_anchors_in_the_reference_match_its_headings():
    text = render_cli_reference()
    anchors = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert anchors and anchors <= _slugs(text)


def test_refresh_replaces_old_output_and_keeps_the_rest():
    text = "intro\n```console\n$ collsim show ring --ranks 2\nstale output\n```\nafter\n```text\n$ collsim nothing\n```\n"
    new = refresh_console_blocks(text)
    assert new.startswith("intro\n```console\n$ collsim show ring --ranks 2\nring allreduce on 2 ranks")
    assert "stale output" not in new and new.endswith("```\nafter\n```text\n$ collsim nothing\n```\n")
    assert refresh_console_blocks(new) == new


@pytest.mark.parametrize("block, message", [
    ("```console\n$ collsim show ring --ranks 0\n```\n", "exited with status 2, expected 0"),
    ("```console error\n$ collsim show ring --ranks 2\n```\n", "exited with status 0, expected 2"),
    ("```console\n$ ls\n```\n", "only 'collsim ...' commands"),
    ("```console\n$ collsim validate --topology switch:n=2\n```\n", "needs root"),
    ("```console\nno command\n```\n", "must start with"),
])
def test_refresh_refuses(block, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        refresh_console_blocks(block)


def test_error_blocks_show_the_one_line_error(tmp_path):
    output, status = run_collsim("collsim show nonsense", tmp_path)
    assert status == 2 and output.startswith("collsim: error:") and output.count("\n") == 1


def test_main_writes_then_checks(tmp_path, capsys):
    (tmp_path / "README.md").write_text("```console\n$ collsim show ring --ranks 2\n```\n")
    assert cli_reference.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale docs/cli.md" in capsys.readouterr().out
    assert cli_reference.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "docs" / "cli.md").read_text() == render_cli_reference()
    assert "ring allreduce on 2 ranks" in (tmp_path / "README.md").read_text()
    assert cli_reference.main(["--root", str(tmp_path), "--check"]) == 0
