"""Every problem of the settings `serve` would read, not only the first (for `serve --check`).

`load_settings` stops at the first refusal, which is right for starting a server; a check is more
useful when it lists them all. So the settings are loaded again and again: after each refusal, the
settings that are refused *on their own* with the same words (a key of the file, a STREAMSNAP_*
variable, a flag) are set aside and the rest is loaded. A refusal that no single setting causes
(settings that do not go together, the same setting given twice) is reported and ends the search:
nothing could be set aside without guessing. Every message is config.py's, as `serve` prints it.

Subsets of the config file are written to a scratch file; its name is put back to the user's in
the messages. (This belongs in config.py as a `load_settings` that collects; until then it is here.)
"""

from __future__ import annotations

import datetime
import json
import math
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamsnap.config import ENV_PREFIX, declarations, load_settings


@dataclass(frozen=True, eq=False)
class Given:
    """One setting as given, in one layer (each is itself: two alike are still two)."""

    layer: Literal["file", "environment", "flag"]
    name: str
    "The key in the file (within `table`), the variable, or the setting a flag sets."
    value: Any
    table: str | None = None
    "The `[table]` of a key of the file; None at the top level."


def settings_problems(config_file: Path | None, overrides: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The messages of every refusal `load_settings(config_file, overrides, environ)` would raise, in its order."""
    problems: list[str] = []
    file_entries: list[Given] = []
    if config_file is not None:
        try:
            # Read as config.py reads it, so that both agree on what is TOML.
            file_entries = _entries(tomllib.loads(Path(config_file).read_text()))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # One problem, in config.py's words; the file's settings are not read at all.
            problems.append(_refusal(lambda: load_settings(config_file, environ={})) or str(exc))
            config_file = None
    entries = [
        *file_entries,
        *(Given("environment", name, value) for name, value in environ.items() if name.startswith(ENV_PREFIX)),
        *(Given("flag", name, value) for name, value in overrides.items() if value is not None),
    ]
    with tempfile.TemporaryDirectory(prefix="streamsnap-check-") as scratch:
        check = _Check(config_file, entries, Path(scratch) / "settings.toml")
        remaining = entries
        while (refusal := check.refusal(remaining)) is not None:
            problems.append(refusal)
            culprits = [given for given in remaining if check.alone(given) == refusal]
            if not culprits:
                break
            remaining = [given for given in remaining if given not in culprits]
    return problems


def setting_variables(environ: Mapping[str, str]) -> list[str]:
    """The variables of `environ` that set a setting (config.py ignores other STREAMSNAP_* names)."""
    known = {name for d in declarations().values() for name in (d.env, d.flat_env)}
    return sorted(name for name in environ if name in known)


class _Check:
    """`load_settings` on a subset of what was given."""

    def __init__(self, config_file: Path | None, entries: Sequence[Given], scratch: Path) -> None:
        self.config_file = config_file
        self.whole_file = [given for given in entries if given.layer == "file"]
        self.scratch = scratch
        self.alone_refusals: dict[Given, str | None] = {}

    def alone(self, given: Given) -> str | None:
        """What `load_settings` says of `given` alone on the defaults (None: nothing)."""
        if given not in self.alone_refusals:
            self.alone_refusals[given] = self.refusal([given])
        return self.alone_refusals[given]

    def refusal(self, chosen: Sequence[Given]) -> str | None:
        """What `load_settings` says of `chosen` (None: nothing), with the user's file named."""
        file_part = [given for given in chosen if given.layer == "file"]
        config_file: Path | None = None
        if file_part == self.whole_file and file_part:
            config_file = self.config_file  # the file itself, as `serve` reads it
        elif file_part:
            # In the encoding config.py reads it with, as the user's file was read.
            self.scratch.write_text(_toml_document(file_part))
            config_file = self.scratch
        environ = {given.name: given.value for given in chosen if given.layer == "environment"}
        overrides = {given.name: given.value for given in chosen if given.layer == "flag"}
        refusal = _refusal(lambda: load_settings(config_file, overrides, environ))
        if refusal is not None and config_file == self.scratch:
            refusal = refusal.replace(str(self.scratch), str(self.config_file))
        return refusal


def _refusal(load: Callable[[], object]) -> str | None:
    try:
        load()
    except ValueError as exc:  # SettingsError, and whatever else `serve` reports as a setting mistake
        return str(exc)
    return None


def _entries(data: Mapping[str, Any]) -> list[Given]:
    """The settings of a parsed config file: each key of a section's table on its own, other keys whole."""
    sections = {d.section for d in declarations().values() if d.section is not None}
    entries: list[Given] = []
    for key, value in data.items():
        if isinstance(value, dict) and value and key.replace("-", "_") in sections:
            entries += [Given("file", inner, inner_value, key) for inner, inner_value in value.items()]
        else:
            entries.append(Given("file", key, value))
    return entries


def _toml_document(entries: Iterable[Given]) -> str:
    """A TOML file of `entries` (as tomllib gave them), tables inline: it reads back as the same keys and values."""
    top: dict[str, Any] = {}
    for given in entries:
        if given.table is None:
            top[given.name] = given.value
        else:
            top.setdefault(given.table, {})[given.name] = given.value
    return "".join(f"{_toml_string(key)} = {_toml_value(value)}\n" for key, value in top.items())


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped and JSON leaves as is.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(key)} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"not a value tomllib gives: {value!r}")
