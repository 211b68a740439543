"""Options of configs: a dataclass field that carries its help, its choices and how a command line parses it.

Parts (bodies, objectives) and the training and data configs declare every option with :func:`option`; the CLI
makes one flag of each field and the estimators one parameter, so a new option is written once, here and in its
dataclass, never again in the CLI. Nothing in here knows any aekit module.
"""

from __future__ import annotations

import argparse
from dataclasses import field


def option(default=None, help: str = "", choices: tuple[str, ...] | None = None, *, parse=None, metavar=None,
           flag: str | None = None, default_factory=None):  # fmt: skip
    """A config field with its help text and choices; ``parse`` converts the command-line text (default: the field's
    type), ``metavar`` names the value in ``--help``, ``flag`` overrides the flag's name (default ``--field-name``)."""
    metadata = {"help": help, "choices": choices, "parse": parse, "metavar": metavar, "flag": flag}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


def image_size(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} must be HxW, e.g. 28x28")
    return values
