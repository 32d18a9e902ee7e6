"""Subcommands of ``collsim``: one module each, discovered by :mod:`sim.cli`."""
