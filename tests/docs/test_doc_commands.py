"""A doc command is a test: every command README.md, docs/*.md and deploy/**/README.md tell
a user to run (in a ``sh`` block) is run by a test, or is listed here with the reason
it cannot be.

:data:`COVERAGE` is the inventory: the first rule whose pattern matches a command says
where it runs. ``test_every_documented_command_is_covered`` fails on a new command with
no rule (add a test, then a rule) and on a rule that no longer matches anything or names
a test that does not exist. Beyond the inventory:

- ``test_documented_twinsync_commands_parse``: every ``twinsync`` invocation in the docs,
  with the shell around it removed (``runuser ... --``, ``docker compose run/exec``,
  ``KEY=$(...)``), is accepted by the real argument parser of its subcommand.
- ``test_cheap_documented_commands_run``: the hub's, the agent's, the privacy and the
  simulation commands run for real, in document order, in one shell in a temporary
  directory with a hub.toml on the test services and this venv's ``twinsync`` on PATH.
  Substitutions, as a user would make them: ``/etc/`` and ``/var/lib/`` → a temporary
  directory; ``[--option value]`` (an optional part) → included; ``--owner``/``--group``
  left out when not running as root (only root may give a file away); the placeholders
  ``--key-id 3f2a9c01b7de`` → the id ``apikey create`` printed, ``--epoch N`` → the
  epoch rotated away from (1), the bundle paths ``bundle/`` and ``bundles/coffee-0001/``
  → ``bundles/m-1/``. The hub.toml is deploy/hub.example.toml with ``[influx]`` and
  ``[mqtt]`` pointed at the test services (its database created beforehand, as the
  example's ``create_database = false`` asks).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from _markdown import REPO, Command, documented_commands
from _shell import Shell, set_toml

from twinsync.services import LocalServices

RUN_HERE = "tests/docs/test_doc_commands.py::test_cheap_documented_commands_run"
README_REAL = "tests/deploy/test_readme_real.py::test_readme_running_it_for_real_works_as_written"
COMPOSE_REAL = "tests/deploy/test_compose.py::test_compose_walkthrough_runs_as_local_processes"
ON_A_HOST = (
    "NOT RUN: needs root and systemd on a real host (the units: tests/deploy/test_systemd_units.py)"
)

#: (file, pattern on the command with comments removed, where it runs) - first match wins
COVERAGE: list[tuple[str, str, str]] = [
    (
        "README.md",
        r"^make demo$",
        "tests/e2e/test_demo.py::test_demo_runs_a_fleet_and_prints_where_to_look",
    ),
    ("README.md", r"^make test$", "NOT RUN: it is the command that runs this suite (CI: .ci/run)"),
    ("README.md", r".", README_REAL),
    ("docs/hub.md", r"^twinsync hub run\b", README_REAL),
    (
        "docs/hub.md",
        r"^twinsync hub (keys|provision|broker-auth|brand-key|check-config|apikey|device|index)\b",
        RUN_HERE,
    ),
    (
        "docs/hub.md",
        r"^curl ",
        "tests/docs/test_api_docs.py::test_documented_curl_commands_are_answered_as_an_authenticated_client",
    ),
    (
        "docs/hub.md",
        r"^twinsync hub train --config hub.toml --sim\b",
        "tests/train/test_training.py::trained",
    ),
    (
        "docs/hub.md",
        r"^twinsync hub (models|rollout)\b",
        "tests/hub/test_rollout.py::test_models_and_rollouts_from_the_command_line",
    ),
    (
        "docs/brand-api.md",
        r"^curl ",
        "tests/docs/test_api_docs.py::test_documented_curl_commands_are_answered_as_an_authenticated_client",
    ),
    ("docs/edge-agent.md", r"^twinsync edge check-config\b", RUN_HERE),
    ("docs/edge-agent.md", r"^twinsync edge run\b", README_REAL),
    (
        "docs/models.md",
        r"^pip install \.\[train\]$",
        "NOT RUN: installs scikit-learn and friends (minutes); the same pip form runs "
        "for [hub] and [edge] in " + README_REAL,
    ),
    (
        "docs/models.md",
        r"^twinsync hub train --config hub.toml --sim --kinds\b",
        "tests/train/test_training.py::test_retraining_one_kind_rewrites_its_models_and_scores_only",
    ),
    (
        "docs/models.md",
        r"^twinsync hub train --config hub.toml --sim\b",
        "tests/train/test_training.py::trained",
    ),
    (
        "docs/models.md",
        r"^make models$",
        "NOT RUN: retrains the shipped defaults (~45 minutes); its command "
        "(hub train --sim --unsigned) parses here",
    ),
    (
        "docs/models.md",
        r"^twinsync hub train --config hub.toml --micro\b",
        "tests/train/test_micro_ship.py::test_the_micro_command_writes_only_micro_models",
    ),
    (
        "docs/models.md",
        r"^make micro-models$",
        "NOT RUN: retrains the shipped micro defaults (~6 minutes); its command "
        "(hub train --micro ... --unsigned) parses here",
    ),
    ("docs/privacy.md", r"^twinsync hub brand-key\b", RUN_HERE),
    ("docs/brand-api.md", r"^twinsync hub apikey create\b", RUN_HERE),
    (
        "docs/brand-api.md",
        r"^pip install /path/to/checkout(\[client\])?$",
        "NOT RUN: installs this checkout (the same pip form runs for [hub] and [edge] in "
        + README_REAL
        + "); the client's examples run in "
        "tests/docs/test_brand_api_docs.py::test_every_example_of_the_brand_api_page_runs_against_a_real_hub",
    ),
    ("docs/simulation.md", r"^twinsync sim (stats|generate)\b", RUN_HERE),
    (
        "deploy/README.md",
        r"^sed .*/etc/twinsync/hub\.toml$",
        "tests/deploy/test_systemd_units.py::test_hub_state_lies_in_the_units_writable_state_directory",
    ),
    (
        "deploy/README.md",
        r"^(cd deploy|umask 077|for name in .*|docker compose .*"
        r"|KEY=\$\(docker compose .*|curl .*:8081/.*)$",
        COMPOSE_REAL,
    ),
    ("deploy/README.md", r".", ON_A_HOST),
    ("deploy/mosquitto/README.md", r"^twinsync hub broker-auth .*--out\b", RUN_HERE),
    (
        "deploy/mosquitto/README.md",
        r"^twinsync hub broker-auth .*--apply\b",
        "tests/hub/test_broker_acl.py::test_provisioning_onto_a_running_broker",
    ),
    ("deploy/mosquitto/README.md", r"^systemctl ", ON_A_HOST),
]


def _covering(command: Command) -> str | None:
    for file, pattern, where in COVERAGE:
        if file == command.file and re.search(pattern, str(command)):
            return where
    return None


def _test_exists(where: str) -> bool:
    path, _, name = where.partition("::")
    tree = ast.parse((REPO / path).read_text())
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in ast.walk(tree)
    )


def test_every_documented_command_is_covered() -> None:
    """Each documented command has a rule; each rule is used; each named test exists."""
    found = documented_commands()
    assert len(found) > 40, "the Markdown scan found too few commands"
    uncovered = [f"{c.file}:{c.line}: {c}" for c in found if _covering(c) is None]
    assert uncovered == [], "documented commands no test runs: add a test and a rule"
    used = {(c.file, _covering(c)) for c in found}
    for file, pattern, where in COVERAGE:
        assert any(f == file and w == where for f, w in used), f"stale rule {file} {pattern}"
        if not where.startswith("NOT RUN"):
            assert _test_exists(where), f"{where} does not exist"


# -- parsing ------------------------------------------------------------------------------

_WRAPPERS = re.compile(
    r"^(?:KEY=\$\()?(?:runuser -u \S+ -- |docker compose (?:run --rm --no-deps|exec -T) \S+ )?"
)


def _argv(command: Command) -> list[str] | None:
    """The argv after ``twinsync`` (shell wrappers and pipes removed), or None."""
    words = command.words
    text = _OPTIONAL.sub(r"\1", _WRAPPERS.sub("", " ".join(words)))
    words = text.split(" ")
    if not words or not words[0].endswith("twinsync"):
        return None
    argv = []
    for word in words[1:]:
        if word in ("|", "&", "&&", ";") or word.startswith(("|", ">")):
            break
        argv.append("1" if word == "N" else word)  # the docs' placeholder epoch
    return argv


def _parser(name: str) -> argparse.ArgumentParser:
    if name == "hub":
        from cloud_hub.cli import parser as hub_parser

        return hub_parser()
    if name == "edge":
        from edge_agent.cli import parser as edge_parser

        return edge_parser()
    if name == "sim":
        from firmware_sim.cli import parser as sim_parser

        return sim_parser()
    if name == "train":
        from twinsync.training.cli import parser as train_parser

        return train_parser("twinsync train")
    raise AssertionError(f"no parser known for 'twinsync {name}'")


def _parse(argv: list[str]) -> None:
    """Parse ``argv`` (after 'twinsync') as the command does; 'hub train' is training's."""
    if argv[:2] == ["hub", "train"]:
        _parser("train").parse_args(argv[2:])
    else:
        _parser(argv[0]).parse_args(argv[1:])


def test_documented_twinsync_commands_parse() -> None:
    """Every documented twinsync command line is accepted by its real parser (wrong
    option names, missing required options or bad values exit 2 and fail here)."""
    parsed = 0
    for command in documented_commands():
        argv = _argv(command)
        if argv is None:
            continue
        try:
            _parse(argv)
        except SystemExit as exc:
            pytest.fail(f"{command.file}:{command.line}: {command} does not parse ({exc})")
        parsed += 1
    # The shipped models' rebuild (Makefile 'models') is documented as 'make models'.
    makefile = (REPO / "Makefile").read_text()
    rebuilds = re.findall(r"-m twinsync (hub train .*)$", makefile, re.M)
    assert len(rebuilds) == 2  # make models, make micro-models
    for rebuild in rebuilds:
        _parse(rebuild.split())
    assert parsed > 30


# -- running the cheap ones -----------------------------------------------------------------

_PLACEHOLDERS = (
    ("bundles/coffee-0001/", "bundles/m-1/"),
    (" bundle/agent.toml", " bundles/m-1/agent.toml"),
    ("/etc/", "{tmp}/etc/"),
    ("/var/lib/", "{tmp}/var/lib/"),
)
#: ``[--option value]``: an optional part of a documented command, included when run
_OPTIONAL = re.compile(r"\[(--[^\]\n]*)\]")


def test_cheap_documented_commands_run(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    """The commands :data:`COVERAGE` assigns to this test run as written (with the
    placeholders of the module docstring filled in) and do what the docs say: bundles,
    broker accounts, an API key listed and revoked, a key epoch rotated and retired, a
    bundle checked, a simulated fleet generated with the bundle's key."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "deploy/hub.example.toml", work / "hub.toml")
    database = f"cmd{unique}"
    services.influxd.query(f'CREATE DATABASE "{database}"')
    set_toml(work / "hub.toml", "influx", {**services.influxd.hub_settings(database)})
    set_toml(work / "hub.toml", "mqtt", {"port": services.mosquitto.port})
    # As after 'pip install': the console script of this checkout's venv on PATH.
    venv_bin = str(Path(sys.executable).parent)
    shell = Shell("docs", work, tmp_path, {"PATH": f"{venv_bin}:{os.environ['PATH']}"})
    # The hub's commands make what the others use (bundles, keys): they go first.
    order = [
        "docs/hub.md",
        "deploy/mosquitto/README.md",
        "docs/edge-agent.md",
        "docs/privacy.md",
        "docs/brand-api.md",
        "docs/simulation.md",
    ]
    mine = sorted(
        (c for c in documented_commands() if _covering(c) == RUN_HERE),
        key=lambda c: (order.index(c.file), c.line),
    )
    key_id = broker_out = ""
    try:
        for command in mine:
            text = command.text
            for old, new in _PLACEHOLDERS:
                text = text.replace(old, new.format(tmp=tmp_path))
            if "--key-id" in text:
                assert key_id, "the docs revoke a key before creating one"
                text = re.sub(r"--key-id \S+", f"--key-id {key_id}", text)
            text = re.sub(r"--epoch N\b", "--epoch 1", _OPTIONAL.sub(r"\1", text))
            if os.geteuid() != 0:  # only root may give a file to another user
                text = re.sub(r"[ \t]+--(owner|group) \S+", "", text)
            if match := re.search(r"broker-auth .*--out (\S+)", text):
                broker_out = match.group(1)
            status, output, _ = shell.run(text, timeout=600)
            assert status == 0, f"{command.file}:{command.line}: {text}\n{output}"
            if match := re.search(r"^key ([0-9a-f]{12}) for", output, re.M):
                key_id = match.group(1)
    finally:
        shell.close()
    assert key_id, "no API key was created"
    bundles = sorted(p.name for p in (work / "bundles").iterdir())
    assert bundles[0] == "m-0001"
    assert bundles[-1] == "m-1"
    assert len(bundles) == 101
    assert broker_out, "the docs never run broker-auth --out"
    assert any(Path(broker_out).iterdir()), "broker-auth wrote nothing"
    assert (work / "sim/signals.jsonl").stat().st_size > 0
    executed = {str(c).split(" --")[0] for c in mine}
    assert {
        "twinsync hub keys",
        "twinsync hub brand-key retire",
        "twinsync sim generate",
    } <= executed
