"""Settings from flags, the environment and ./.env, read one way by every command.

Names. Each setting has one canonical variable, and our variables all start with PGVECTORIZER_:
PGVECTORIZER_NAME for the worker (and `status`, `search`, in-database runs),
PGVECTORIZER_SERVE_NAME for `pgvectorizer serve`, PGVECTORIZER_GPU_NAME for `pgvectorizer
gpu-worker`. A setting may also have aliases: the names pgai's worker reads
(PGAI_VECTORIZER_WORKER_*, VECTORIZER_DB_URL) and those of the embedding queue this service
stands in for (AUTH_TOKEN, SERVER_URL, POLL_INTERVAL, ...), so that existing deployments keep
working. The canonical name wins over its aliases, and the aliases are read in the order given;
a variable that is empty, or only blanks, counts as unset (as when a compose file blanks one
out) and the next name is read.

Precedence. A flag wins over its variables, and they over the default; the environment wins
over ./.env, whose variables the commands copy into os.environ where these are not set
(cli.py, with dotenv.load_env) before reading anything.

Bad values. A parser here takes the text as the variable or flag gives it and raises
ValueError with a message that quotes it, which argparse shows as it is (see argtype). From a
variable, the message also names the variable; three families of variables keep the wording
they have always had (operators' scripts and the tests match on it), each a Dialect:
COMMAND (the commands' own flags' variables: ValueError, exit status 2), SERVICE (the queue
service's: ConfigError), TUNING (the worker's and the embedders' PGVECTORIZER_ tunables:
ConfigError, and only an empty value counts as unset).

Light imports only: `--help` answers before psycopg, pydantic or torch are loaded.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar, overload

from pgvectorizer.errors import ConfigError

T = TypeVar("T")


# --- names ----------------------------------------------------------------------------------

@dataclass(frozen=True, init=False)
class Var:
    """One setting's variables: the canonical name, then the aliases still read, in order."""

    name: str
    aliases: tuple[str, ...]

    def __init__(self, name: str, *aliases: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "aliases", aliases)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def __str__(self) -> str:
        """The names in the order they are read, for --help: "A, then B"."""
        return ", then ".join(self.names)


def variable_names(variables: Iterable[Var]) -> tuple[str, ...]:
    """Every name the variables may be set under, canonical names and aliases."""
    return tuple(name for var in variables for name in var.names)


# --- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dialect:
    """How a family of variables reports a bad value (`template`, formatted with the
    variable's name, its raw value and the parser's message) and whether a value of blanks
    counts as unset."""

    error: type[Exception]
    template: str
    blank_is_unset: bool = True


# "environment variable PGVECTORIZER_CONCURRENCY='0': '0' is less than 1"
COMMAND = Dialect(ValueError, "environment variable {name}={raw!r}: {problem}")
# "LEASE_SECONDS='0.5' is less than 1" (the parser quotes the value without its blanks)
SERVICE = Dialect(ConfigError, "{name}={problem}")
# "PGVECTORIZER_LEASE_SECONDS must be a number of seconds, got 'soon'"
TUNING = Dialect(ConfigError, "{name} {problem}", blank_is_unset=False)


class Env:
    """The settings that one mapping holds: os.environ once ./.env is merged, or a test's dict."""

    def __init__(self, environ: Mapping[str, str], dialect: Dialect = COMMAND) -> None:
        self.environ = environ
        self.dialect = dialect

    def lookup(self, var: Var) -> tuple[str, str] | None:
        """The first of the names that is set, with its value as given; None when none is."""
        for name in var.names:
            raw = self.environ.get(name)
            if raw and (raw.strip() or not self.dialect.blank_is_unset):
                return name, raw
        return None

    @overload
    def text(self, var: Var) -> str | None: ...

    @overload
    def text(self, var: Var, default: str) -> str: ...

    def text(self, var: Var, default: str | None = None) -> str | None:
        """The value as given (blanks and all), or the default."""
        found = self.lookup(var)
        return default if found is None else found[1]

    @overload
    def get(self, var: Var, parse: Callable[[str], T], *, flag: T | None = None) -> T | None: ...

    @overload
    def get(self, var: Var, parse: Callable[[str], T], default: T, *,
            flag: T | None = None) -> T: ...

    def get(self, var: Var, parse: Callable[[str], T], default: T | None = None, *,
            flag: T | None = None) -> T | None:
        """The flag when given (not None), else the variable parsed, else the default. A bad
        value raises the dialect's error naming the variable it came from; a variable is not
        read at all when the flag is given."""
        if flag is not None:
            return flag
        found = self.lookup(var)
        if found is None:
            return default
        name, raw = found
        try:
            return parse(raw)
        except ValueError as exc:
            message = self.dialect.template.format(name=name, raw=raw, problem=exc)
            raise self.dialect.error(message) from None


def argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wraps a parser for argparse, which shows an ArgumentTypeError's own message."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = getattr(parse, "__name__", convert.__name__)  # a partial has none
    return convert


# --- values of the commands' flags and variables (COMMAND) ----------------------------------

_UNITS = (("d", "days"), ("h", "hours"), ("m", "minutes"), ("s", "seconds"))
# Units largest first, each at most once, so "1h30m" reads one way only; spaces may separate.
_DURATION = re.compile(r"\s*".join(rf"(?:([0-9]+){u})?" for u, _ in _UNITS), re.ASCII)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _float(text: str, problem: str) -> float:
    """float(text), or ValueError(problem) when it is not a number."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(problem) from None


def parse_positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{text!r} is less than 1")
    return number


def at_most(high: int) -> Callable[[str], int]:
    """parse_positive_int, and no more than high."""
    def parse(text: str) -> int:
        number = parse_positive_int(text)
        if number > high:
            raise ValueError(f"{text!r} is more than {high}")
        return number
    return parse


def parse_seconds(text: str, *, maximum: float | None = None) -> float:
    """A number of seconds more than 0 ("2", "0.5"); with a maximum, from 0 to it."""
    value = _float(text, f"{text!r} is not a number of seconds")
    if maximum is None:
        if not 0 < value < math.inf:
            raise ValueError(f"{text!r} is not more than 0 seconds")
    elif not 0 <= value <= maximum:
        raise ValueError(f"{text!r} is not between 0 and {maximum:g} seconds")
    return value


def parse_duration(text: str) -> timedelta:
    """A positive duration: whole seconds ("900") or units largest first ("30s", "1h30m", "2d")."""
    value = text.strip().lower()
    if value.startswith("-"):
        raise ValueError(f"{text!r} is negative: the interval must be longer than zero")
    if re.fullmatch(r"[0-9]+", value, re.ASCII):
        delta = timedelta(seconds=int(value))
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None or not any(match.groups()):
            raise ValueError(f"{text!r} is not a duration: use whole seconds or units d, h, m, s "
                             "largest first, like 30s, 5m, 1h30m, 2d")
        try:
            delta = timedelta(**{name: int(n) for (_, name), n in zip(_UNITS, match.groups(), strict=True)
                                 if n is not None})
        except OverflowError:
            raise ValueError(f"{text!r} is too long a duration") from None
    if delta <= timedelta(0):
        raise ValueError(f"{text!r} is not longer than zero")
    return delta


def parse_bool(text: str) -> bool:
    """true/1/yes/on or false/0/no/off, in any case."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean: use true/false, 1/0, yes/no or on/off")


# --- values of the queue service's variables (SERVICE) --------------------------------------

def parse_number(text: str, *, minimum: float) -> float:
    """A finite number of at least minimum ("10", "2.5", "1e3")."""
    value = text.strip()
    number = _float(value, f"{value!r} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number < minimum:
        raise ValueError(f"{value!r} is less than {minimum:g}")
    return number


def parse_whole(text: str, *, minimum: int) -> int:
    """parse_number, and whole ("3", "3.0")."""
    number = parse_number(text, minimum=minimum)
    if number != int(number):
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


# --- the worker's and the embedders' tunables (TUNING) --------------------------------------

def parse_tuning_seconds(text: str, *, positive: bool = False) -> float:
    """A number of seconds, not negative (or, if positive, more than 0)."""
    value = _float(text, f"must be a number of seconds, got {text!r}")
    if positive and value <= 0:
        raise ValueError(f"must be positive, got {text!r}")
    if value < 0:
        raise ValueError(f"must not be negative, got {text!r}")
    return value


def tuning_seconds(environ: Mapping[str, str], name: str, default: float, *,
                   positive: bool = False) -> float:
    """The tunable `name` in seconds, or the default; ConfigError naming it when bad."""
    parse = partial(parse_tuning_seconds, positive=positive)
    return Env(environ, TUNING).get(Var(name), parse, default)


def tuning_whole(environ: Mapping[str, str], name: str, default: int) -> int:
    """The tunable `name` as a whole number of at least 1, or the default; ConfigError naming
    it when bad."""
    return Env(environ, TUNING).get(Var(name), partial(parse_whole, minimum=1), default)
