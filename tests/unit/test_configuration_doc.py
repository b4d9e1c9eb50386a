"""docs/configuration.md is generated from `Settings`: every setting documented, the committed copy current."""

from __future__ import annotations

from chirp.settings import Settings
from ops import config_doc


def test_every_setting_says_what_it_means() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_the_committed_configuration_doc_is_current() -> None:
    committed = config_doc.PATH.read_text()
    assert committed == config_doc.render(), "docs/configuration.md is stale: run `make docs`"
    for name in Settings.model_fields:
        assert f"`CHIRP_{name.upper()}`" in committed
