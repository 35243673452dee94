"""`streamsnap token`: access tokens signed with the server's secret, for clients of a server with access on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streamsnap.access import Right, TokenPolicy
from streamsnap.cli.arguments import seconds
from streamsnap.config import SettingsError, load_settings


def add_parser(commands: Any) -> None:
    """Add `token` to the subcommands."""
    token = commands.add_parser(
        "token", help="print an access token",
        description="Sign an access token with the server's auth_secret (from --config or "
        "STREAMSNAP_AUTH_SECRET) and print it, for clients of a server with access control on.",
    )
    token.set_defaults(run=run)
    # Every right the server checks, so that no right (`pull` was one) is out of the CLI's reach.
    token.add_argument("rights", nargs="+", choices=[str(right) for right in Right], help="what it allows")
    token.add_argument("--config", type=Path, help="TOML file of settings, as for serve")
    token.add_argument("--stream", action="append", dest="streams", metavar="PATTERN", default=[],
                       help="stream name pattern the rights cover, e.g. 'cam-*' (repeat; default: every stream)")
    token.add_argument("--ttl", type=seconds(zero_ok=True), default=3600.0, metavar="SECONDS",
                       help="seconds the token is valid (default 3600; 0: no expiry, which servers refuse "
                       "unless auth_allow_no_exp is set)")
    token.add_argument("--subject", help="the token's `sub`, shown in the server's logs")


def run(args: argparse.Namespace) -> int:
    """Print a token with the rights `args` name; return the exit status."""
    try:
        # A secret too short for HS256 (RFC 7518) is refused here, by config.py, with the setting named.
        settings = load_settings(args.config, {})
    except (SettingsError, ValueError) as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 2
    if not settings.access.secret:
        print("streamsnap: no auth_secret configured (set STREAMSNAP_AUTH_SECRET or use --config)", file=sys.stderr)
        return 2
    policy = TokenPolicy(settings.access.secret, issuer=settings.access.issuer)
    print(policy.issue(args.rights, streams=args.streams, subject=args.subject, ttl=args.ttl or None))
    return 0
