"""Command-line plumbing shared by the jobs: flags derived from a pydantic model, one-line errors."""

from __future__ import annotations

import argparse
import typing

from pydantic import BaseModel, ValidationError


def parser_for(model: type[BaseModel], description: str) -> argparse.ArgumentParser:
    """One `--flag-name` per field, with the field's description as help; bools are switches (a bool
    that defaults to True also gets `--no-flag-name`, so it can be turned off).

    Values stay strings here and pydantic converts and checks them, so the rules live in one place.
    """
    parser = argparse.ArgumentParser(description=description)
    for name, info in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        # argparse %-formats help texts: a literal "%" (e.g. "within 20%") must be doubled.
        description = (info.description or "").replace("%", "%%")
        help_text = description + ("" if info.is_required() else f" (default: {default})".replace("%", "%%"))
        if info.annotation is bool:
            action = argparse.BooleanOptionalAction if default is True else "store_true"
            parser.add_argument(flag, dest=name, action=action, default=None, help=description)
        else:
            choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else None
            parser.add_argument(flag, dest=name, required=info.is_required(), choices=choices, help=help_text)
    return parser


def config_from_args(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    """Validate parsed flags; unset flags take the model's defaults."""
    return model.model_validate({k: v for k, v in vars(args).items() if v is not None})


def one_line(err: Exception) -> str:
    """A validation or usage error as the single line the CLI prints."""
    if isinstance(err, ValidationError):
        return "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" if e["loc"] else e["msg"]
            for e in err.errors()
        )
    return str(err)
