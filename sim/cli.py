"""The ``collsim`` command line (also ``python -m sim``).

Every subcommand is a module in :mod:`sim.commands` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; the CLI discovers them, so adding a command is
adding a module. Bad arguments print one line, ``collsim: error: ...``, and exit with status 2;
``collsim`` alone prints the usage and the commands and exits with status 2, as argparse does for a
missing argument. ``collsim --version`` prints the installed package's version.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

__all__ = ["main", "UsageError", "build_parser"]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(f"{self.prog}: error: {message}")


def _commands():
    import sim.commands

    for info in sorted(pkgutil.iter_modules(sim.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"sim.commands.{info.name}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("collsim")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="collsim", description="Collective-communication runtime and simulator.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:
            parser.print_help(sys.stderr)
            return 2
        args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except (UsageError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if not message.startswith("collsim"):
            message = f"collsim: error: {message}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
