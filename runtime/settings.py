"""Setting types the services share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# A list given as one comma-separated string in the environment ("a, b"; empty: none), not
# as JSON: pydantic-settings hands the raw string over (NoDecode), split here.
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
