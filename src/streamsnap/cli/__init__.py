"""The `streamsnap` command: the root parser and the entry point of every subcommand.

Each subcommand lives in a module of its own and registers itself with `add_parser`, setting
`run`, the function `main` calls with the parsed arguments: `serve` and `config` (the server and
its settings), `publish` and `snapshot` (`client.py`, a WebRTC test client), `token` (access tokens).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from streamsnap import __version__
from streamsnap.cli import client, serve, token


class _Parser(argparse.ArgumentParser):
    """argparse with its complaints on one line, `streamsnap: ...`, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"streamsnap: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="streamsnap", description="Still pictures of live WebRTC streams.")
    parser.add_argument("--version", action="version", version=f"streamsnap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(commands)
    client.add_parsers(commands)
    token.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamsnap` command."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
