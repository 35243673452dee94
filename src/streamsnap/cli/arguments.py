"""Value types of the command line shared by more than one command (argparse `type=` callables)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse with its complaints on one line, `streamsnap: ...`, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"streamsnap: {message} (see '{self.prog} --help')\n")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}-{high}")
        return value
    return parse


def seconds(*, zero_ok: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, more than 0 (or 0 too, with `zero_ok`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
        if not (0 <= value if zero_ok else 0 < value) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text} must be {'0 or more' if zero_ok else 'more than 0'}")
        return value
    return parse
