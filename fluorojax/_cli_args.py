"""argparse types for the ``fluorojax`` commands, built on ``fluorojax._validate``: a bad value
is an argparse usage error (exit status 2) naming the option and what it expects."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from fluorojax import _validate

T = TypeVar("T")


def _parser(check: Callable[[str, object], T], parse: Callable[[str], object]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return check("value", parse(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace("value must be", "must be")) from None

    return convert


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"value must be a number, got {text!r}") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"value must be an integer, got {text!r}") from None


finite_float = _parser(_validate.number, _float)
"""A finite number (NaN and inf refused)."""

positive_float = _parser(_validate.positive_number, _float)
"""A finite number > 0."""

positive_int = _parser(_validate.positive_int, _int)
"""An integer >= 1."""

non_negative_int = _parser(lambda name, value: _validate.integer(name, value, minimum=0), _int)
"""An integer >= 0."""
