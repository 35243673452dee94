"""The `streamsnap` command: the root parser and the entry point of every subcommand.

Each subcommand lives in a module of its own and registers itself with `add_parser`, setting
`run`, the function `main` calls with the parsed arguments: `serve` and `config` (the server and
its settings), `publish` and `snapshot` (`client.py`, a WebRTC test client), `token` (access tokens).

Nothing heavy is imported before `main` runs: the subcommands' modules (aiohttp, the settings,
aiortc) are imported inside it, so that a Ctrl-C while they load is `main`'s to answer (exit
status 130, no traceback) rather than an import's traceback.
"""

from __future__ import annotations

import signal

TYPE_CHECKING = False  # typing itself takes ~10 ms to import: not before Ctrl-C is ours to answer
if TYPE_CHECKING:
    import argparse

INTERRUPTED = 130
"The exit status after Ctrl-C (128 + SIGINT, as shells report a command interrupted)."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from streamsnap import __version__
    from streamsnap.cli import client, serve, token
    from streamsnap.cli.arguments import OneLineParser

    parser = OneLineParser(prog="streamsnap", description="Still pictures of live WebRTC streams.",
                           epilog="Ctrl-C ends any command with exit status 130 (a publish that is PUBLISHING "
                           "unpublishes first, then exits 0).")
    parser.add_argument("--version", action="version", version=f"streamsnap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(commands)
    client.add_parsers(commands)
    token.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamsnap` command; Ctrl-C at any moment is exit status 130, without a traceback."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except KeyboardInterrupt:
        status = INTERRUPTED
    # From here the process only exits: a Ctrl-C now ends it by the signal, quietly (the shell shows 130),
    # instead of a traceback from the interpreter's shutdown.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return status
