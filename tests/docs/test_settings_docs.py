"""Every setting of the hub and of the agent is documented where users look, and every
documented setting exists.

The settings are read from the pydantic models themselves (HubConfig, AgentConfig):
each ``section.key`` must appear, in backquotes, in the configuration table of
docs/hub.md / docs/edge-agent.md, and every ``section.key`` named in those tables must
be a real setting. deploy/hub.example.toml must also mention each hub setting, since
it is the file operators start from.
"""

from __future__ import annotations

import re

import pytest
from _markdown import REPO
from pydantic import BaseModel

from cloud_hub import HubConfig
from edge_agent import AgentConfig


def _settings(model: type[BaseModel]) -> set[str]:
    out = set()
    for section, field in model.model_fields.items():
        sub = field.annotation
        assert isinstance(sub, type)
        assert issubclass(sub, BaseModel), section
        out |= {f"{section}.{key}" for key in sub.model_fields}
    return out


def _table(doc: str, heading: str) -> str:
    text = (REPO / doc).read_text()
    start = text.index(heading)
    return text[start : text.index("\n## ", start + 1)]


def _documented(table: str, sections: set[str]) -> set[str]:
    """``section.key`` names in backquotes of the table's rows (first column), including
    ``a.b`` / ``a.c`` pairs in one cell."""
    names = set()
    for row in (line for line in table.splitlines() if line.startswith("| `")):
        first = row.split("|")[1]
        names |= {
            n for n in re.findall(r"`([a-z_]+\.[a-z_]+)`", first) if n.split(".")[0] in sections
        }
    return names


CASES = [
    (HubConfig, "docs/hub.md", "## Configuration"),
    (AgentConfig, "docs/edge-agent.md", "## Configuration reference"),
]


@pytest.mark.parametrize(("model", "doc", "heading"), CASES, ids=["hub", "agent"])
def test_every_setting_is_documented_and_every_documented_one_exists(
    model: type[BaseModel], doc: str, heading: str
) -> None:
    """The configuration table has a row for each setting, and none for a setting that
    does not exist."""
    settings = _settings(model)
    documented = _documented(_table(doc, heading), set(model.model_fields))
    assert sorted(settings - documented) == [], f"undocumented in {doc}"
    assert sorted(documented - settings) == [], f"documented in {doc} but not settings"
