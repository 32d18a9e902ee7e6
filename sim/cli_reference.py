"""Generate the docs that come from the ``collsim`` program itself, so they cannot drift.

Two things are generated:

1. ``docs/cli.md``, the command-line reference: every subcommand's usage line and options, read from
   the argparse parser that :func:`sim.cli.build_parser` builds (:func:`render_cli_reference`). The
   usage lines are assembled here from the parser's actions rather than by argparse's help
   formatter, whose layout changes between Python versions and terminal widths.
2. The example outputs in ``README.md`` and ``docs/*.md``: every fenced block whose info string is
   ``console`` holds ``$ collsim ...`` lines, each followed by that command's output
   (:func:`refresh_console_blocks`). Those commands are run in-process, in a scratch directory, with
   stdout and stderr captured together in the order they were written; their output replaces the
   old one. Progress lines (written only when a command runs for seconds, so they depend on the
   machine) are turned off, and the compiled event loops are loaded beforehand (their first
   compile on a machine announces itself on stderr). Every command must succeed (exit status 0), except in blocks marked ```` ```console
   error ````, where every command must fail with status 2 (examples of error messages). Only
   deterministic commands belong there: ``validate``, ``calibrate`` and ``emulate`` need root and
   real time, so they are refused (quote their output in a ``text`` block).

Run from the repository root::

    python -m sim.cli_reference           # rewrite docs/cli.md and every console block
    python -m sim.cli_reference --check   # exit 1, naming the files, if any of them is stale
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

__all__ = [
    "CLI_REFERENCE",
    "REGENERATE",
    "generated_files",
    "main",
    "refresh_console_blocks",
    "render_cli_reference",
    "run_collsim",
]

#: Where the CLI reference lives, relative to the repository root.
CLI_REFERENCE = Path("docs") / "cli.md"

#: The command that regenerates everything this module generates.
REGENERATE = "python -m sim.cli_reference"

#: Commands that need root, an emulated network or wall-clock time: never run for the docs.
_NOT_RUN = ("validate", "calibrate", "emulate")

_USAGE_WIDTH = 100


def _subcommands(parser: argparse.ArgumentParser):
    """(name, help, subparser) for every subcommand of ``parser``, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already listed
                    continue
                seen.add(id(sub))
                yield name, helps.get(name) or sub.description or "", sub


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _value(action: argparse.Action) -> str:
    """What follows the option on the command line ('' for a flag)."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    return {
        None: m,
        "?": f"[{m}]",
        "*": f"[{m} ...]",
        "+": f"{m} [{m} ...]",
    }.get(action.nargs, " ".join([m] * action.nargs) if isinstance(action.nargs, int) else m)


def _visible(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def _usage(prog: str, parser: argparse.ArgumentParser) -> str:
    words = []
    for action in _visible(parser):
        if isinstance(action, argparse._SubParsersAction):
            words.append("COMMAND ...")
        elif not action.option_strings:
            words.append(_value(action))
        else:
            word = " ".join(w for w in (action.option_strings[0], _value(action)) if w)
            words.append(word if action.required else f"[{word}]")
    head = f"usage: {prog}"
    lines, line = [], head
    for word in words:
        if len(line) + 1 + len(word) > _USAGE_WIDTH and line.strip() != head:
            lines.append(line)
            line = " " * len(head)
        line += " " + word
    lines.append(line)
    return "\n".join(lines)


def _help(action: argparse.Action, prog: str) -> str:
    """The action's help with argparse's ``%(name)s`` fields filled in, as argparse does."""
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    return " ".join(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d is None or d is argparse.SUPPRESS or action.required:
        return ""
    if isinstance(d, (list, tuple)):
        d = ",".join(str(x) for x in d)
    return _code(str(d))


def _options_table(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    rows = []
    for action in _visible(parser):
        if isinstance(action, argparse._SubParsersAction):
            continue
        names = ", ".join(action.option_strings) if action.option_strings else _metavar(action)
        value = _value(action) if action.option_strings else ""
        help_text = _help(action, prog)
        if action.required and action.option_strings:
            help_text = "**required.** " + help_text
        rows.append(f"| {_cell(_code(names))} | {_cell(_code(value))} | {_cell(_default(action))} "
                    f"| {_cell(help_text)} |")
    if not rows:
        return []
    return ["| argument | value | default | description |", "|---|---|---|---|", *rows]


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Return the Markdown CLI reference of ``collsim`` (the text of ``docs/cli.md``).

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
        The parser to describe; default :func:`sim.cli.build_parser`.

    Returns
    -------
    str
        Markdown: a table of subcommands, then per subcommand its usage line and a table of its
        arguments (option strings, value, default, help).
    """
    if parser is None:
        from sim.cli import build_parser

        parser = build_parser()
    prog = parser.prog
    commands = list(_subcommands(parser))
    out = [
        f"# `{prog}` command-line reference",
        "",
        f"<!-- Generated from the argparse parser (sim/cli.py) by `{REGENERATE}`. Do not edit by hand. -->",
        "",
        f"{parser.description or ''} Run `{prog} COMMAND --help` for the same text in a terminal; "
        f"`python -m sim` is the same program. Bad arguments print one line, `{prog}: error: ...`, "
        "and exit with status 2.",
        "",
        "```text",
        _usage(prog, parser),
        "```",
        "",
    ]
    top = _options_table(parser, prog)
    if top:
        out += [*top, ""]
    out += ["| command | what it does |", "|---|---|"]
    for name, help_text, _ in commands:
        title = f"{prog} {name}"
        out.append(f"| [`{name}`](#{_anchor(title)}) | {_cell(' '.join(help_text.split()))} |")
    out.append("")
    for name, help_text, sub in commands:
        out += [f"## {prog} {name}", "", " ".join((sub.description or help_text).split()), "",
                "```text", _usage(f"{prog} {name}", sub), "```", ""]
        table = _options_table(sub, f"{prog} {name}")
        if table:
            out += [*table, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def run_collsim(command: str, cwd: str | os.PathLike) -> tuple[str, int]:
    """Run one ``collsim ...`` command line in-process in ``cwd``.

    Returns
    -------
    (str, int)
        Its stdout and stderr together, in the order written, and its exit status.

    Raises
    ------
    ValueError
        If the line is not a ``collsim`` command, or runs a command that needs root or real time.
    """
    from sim.cli import main as collsim_main

    argv = shlex.split(command)
    if not argv or argv[0] != "collsim":
        raise ValueError(f"console blocks hold only 'collsim ...' commands, got {command!r}")
    if len(argv) > 1 and argv[1] in _NOT_RUN:
        raise ValueError(f"'collsim {argv[1]}' needs root and real time: quote its output in a text block, "
                         f"not a console block ({command!r})")
    from sim.flow import load_compiled
    from sim.results import Progress

    load_compiled()  # (the first use on a machine compiles them, and says so: not part of any output)
    buffer = io.StringIO()
    old, every = os.getcwd(), Progress.every
    try:
        os.chdir(cwd)
        Progress.every = float("inf")  # progress lines depend on how fast the machine is: none here
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            status = collsim_main(argv[1:])
    finally:
        os.chdir(old)
        Progress.every = every
    return buffer.getvalue(), status


_CONSOLE = re.compile(r"^```console( error)?\n(.*?)^```", re.S | re.M)


def refresh_console_blocks(text: str) -> str:
    """Return ``text`` with the output under every ``$ collsim ...`` line of its console blocks renewed.

    Each command runs in its own empty scratch directory, so files it writes (``-o tuning.json``)
    go nowhere.

    Raises
    ------
    ValueError
        If a command exits with another status than its block expects (0, or 2 in a
        ``console error`` block), naming the command and quoting its output.
    """

    def block(match: re.Match) -> str:
        expect = 2 if match.group(1) else 0
        lines = match.group(2).splitlines()
        commands = [line[2:] for line in lines if line.startswith("$ ")]
        if not commands:
            raise ValueError(f"a console block must start with a '$ collsim ...' line: {lines[:1]!r}")
        body = []
        for command in commands:
            with tempfile.TemporaryDirectory(prefix="collsim-docs-") as scratch:
                output, status = run_collsim(command, scratch)
            if status != expect:
                raise ValueError(f"'{command}' exited with status {status}, expected {expect} in a "
                                 f"'console{match.group(1) or ''}' block; its output:\n{output}")
            body.append(f"$ {command}\n{output}")
            if body[-1] and not body[-1].endswith("\n"):
                body[-1] += "\n"
        return f"```console{match.group(1) or ''}\n" + "".join(body) + "```"

    return _CONSOLE.sub(block, text)


def generated_files(root: str | os.PathLike) -> dict[Path, str]:
    """What the generated files under ``root`` should contain: {path: text}.

    ``docs/cli.md``, and every Markdown file (``README.md``, ``docs/*.md``) that has a console block.
    """
    root = Path(root)
    files = {root / CLI_REFERENCE: render_cli_reference()}
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if path.name == CLI_REFERENCE.name or not path.exists():
            continue
        text = path.read_text()
        if _CONSOLE.search(text):
            files[path] = refresh_console_blocks(text)
    return files


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated docs (or, with ``--check``, report which are stale); return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sim.cli_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                        help="repository root (default: the checkout this module is in)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / "README.md").exists():
        parser.error(f"--root: no README.md in {root}")
    stale = []
    for path, text in generated_files(root).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(root))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and stale:
        print(f"regenerate with: {REGENERATE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
