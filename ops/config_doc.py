"""docs/configuration.md, generated from the `Settings` model: every setting, its variable, default and meaning.

`make docs` (or `python -m ops.config_doc`) rewrites it; a test fails when the committed copy is stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from chirp.settings import Settings

PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HEADER = """\
# Configuration

<!-- Generated from chirp/settings.py by `make docs`; edit the field descriptions there, not this file. -->

Every process reads one settings object, `chirp.settings.Settings`: each field below is the environment variable
`CHIRP_<NAME>` (or a line `CHIRP_<NAME>=value` in a `.env` file in the working directory). The defaults work on
one machine with `make run`. Values of the dict fields are JSON.

| variable | type | default | meaning |
| --- | --- | --- | --- |
"""

FOOTER = """
Read outside the settings object:

| variable | read by | meaning |
| --- | --- | --- |
| `CHIRP_TOPIC_NAMESPACE` | `schemas/topics.py` | prefix of every topic and post channel (the tests use `test-`) |
| `CHIRP_CORPORA` | the tests | the shared corpora (`xss/`, `markdown/`, `jwt/`); default `../shared/corpora` |
"""


def _type(field: FieldInfo) -> str:
    text = str(field.annotation) if not isinstance(field.annotation, type) else field.annotation.__name__
    text = re.sub(r"\b(typing|pathlib|pydantic(\.types)?)\.", "", text)
    literal = re.fullmatch(r"Literal\[(.*)\]", text)
    if literal:
        return " \\| ".join(v.strip(" '") for v in literal.group(1).split(","))
    return text.replace("SecretStr", "str (secret)").replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    value: Any = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Path):
        value = str(value).replace(str(Path.home()), "~", 1)
    if isinstance(value, dict):
        value = json.dumps(value)
    return f"`{value}`" if value != "" else "empty"


def render() -> str:
    rows = [
        f"| `CHIRP_{name.upper()}` | {_type(field)} | {_default(field)} | {field.description} |"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "\n".join(rows) + "\n" + FOOTER


def write(path: Path = PATH) -> Path:
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(write())
