"""``[state]``: a wrong url, credentials, database or file is a clear config error.

The settings are checked when the config loads (``twinsync hub check-config`` and every
start), the database when the store opens: wrong credentials, a missing database or an
unusable file name the setting to fix (ConfigError: a restart cannot help); a database
that is down is ``StateUnavailableError`` (retry). A password never travels in the url,
never appears in an error message and is masked wherever the config is printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub import ConfigError, HubConfig, load_hub_config
from cloud_hub.store import StateUnavailableError, open_state_store, state_store_from
from twinsync.services import Postgres, PostgresDatabase, free_port

#: the newest migration this hub ships
SCHEMA_VERSION = 7  # the newest migration (7: the strategy lab's experiments)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://state.sqlite", "sqlite:///"),
        ("sqlite:///", "sqlite:///"),
        ("sqlite:///:memory:", "every instance must open the same file"),
        ("mysql://hub@db/twinsync", "use sqlite:/// or postgresql://"),
        ("postgresql://hub:hunter2@db/twinsync", "state.password_file"),
        ("postgresql://db.example.com/twinsync", "names user, host and database"),
        ("postgresql://hub@db.example.com/", "names user, host and database"),
        ("postgresql://hub@db.example.com:70000/twinsync", "not 1-65535"),
        ("postgresql://hub@db/twinsync?options=-c%20x", "allowed: application_name"),
    ],
)
def test_a_malformed_url_is_refused_at_load_naming_what_to_write(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_hub_config(None, {"state": {"url": url}})
    assert "state.url" in str(caught.value)
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)  # not even the one put in the url


def test_the_registry_path_stays_the_sqlite_default(tmp_path: Path) -> None:
    (tmp_path / "hub.toml").write_text('[registry]\npath = "var/registry.sqlite"\n')
    config = load_hub_config(tmp_path / "hub.toml")
    assert config.registry.path == tmp_path / "var/registry.sqlite"
    assert config.state.url == f"sqlite:///{tmp_path}/var/registry.sqlite"


def test_a_sqlite_url_is_where_the_hub_keeps_its_state(tmp_path: Path) -> None:
    """Relative to hub.toml, like every path; ``registry.path`` (the older name of the
    same setting) follows it."""
    (tmp_path / "hub.toml").write_text('[state]\nurl = "sqlite:///state/hub.sqlite"\n')
    config = load_hub_config(tmp_path / "hub.toml")
    assert config.state.url == f"sqlite:///{tmp_path}/state/hub.sqlite"
    assert config.registry.path == tmp_path / "state/hub.sqlite"
    with state_store_from(config.state) as store:
        assert store.version() == SCHEMA_VERSION
    assert (tmp_path / "state/hub.sqlite").exists()


def test_two_different_sqlite_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name different SQLite files"):
        load_hub_config(
            None, {"state": {"url": "sqlite:///a.sqlite"}, "registry": {"path": "b.sqlite"}}
        )


def test_a_postgresql_url_is_taken_and_registry_path_then_names_nothing(
    tmp_path: Path,
) -> None:
    """An example config keeps its ``[registry] path`` when the environment points the
    state at PostgreSQL (as the compose file does): the url wins, no file is involved."""
    (tmp_path / "hub.toml").write_text('[registry]\npath = "registry.sqlite"\n')
    url = "postgresql://twinsync@db.example.com:5432/twinsync?sslmode=verify-full"
    config = load_hub_config(tmp_path / "hub.toml", environ={"TWINSYNC_HUB__STATE__URL": url})
    assert config.state.url == url
    assert config.state.target.host == "db.example.com"
    assert config.state.target.options == {"sslmode": "verify-full"}


def test_a_password_is_masked_when_the_config_is_printed() -> None:
    """What ``twinsync hub check-config`` prints (the config's JSON dump) and any repr."""
    state_settings = type(HubConfig().state)  # the [state] section's model
    state = state_settings.model_validate(
        {"url": "postgresql://hub@db/twinsync", "password": "hunter2"}
    )
    assert "hunter2" not in json.dumps(state.model_dump(mode="json"))
    assert "hunter2" not in repr(state)
    assert state.secret() == "hunter2"


def test_a_password_for_a_sqlite_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="are for PostgreSQL"):
        load_hub_config(None, {"state": {"password": "hunter2"}})


def test_a_state_file_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"cannot open the state file .*set state.url"):
        open_state_store(f"sqlite:///{tmp_path / 'a-file' / 'state.sqlite'}")


def test_wrong_postgresql_credentials_are_a_config_error(postgres: PostgresDatabase) -> None:
    with pytest.raises(ConfigError) as caught:
        open_state_store(postgres.url, password="not-the-password")
    message = str(caught.value)
    assert "refused the hub's credentials" in message
    assert "state.password_file" in message
    assert "not-the-password" not in message
    assert postgres.password not in message
    with pytest.raises(ConfigError, match="refused the hub's credentials"):
        open_state_store(postgres.url.replace("admin@", "intruder@"), password=postgres.password)
    # No password at all is a setting to fix too, not a database to wait for.
    with pytest.raises(ConfigError, match=r"refused the hub's credentials.*no password"):
        open_state_store(postgres.url)


def test_a_missing_database_is_a_config_error_saying_how_to_make_it(
    postgres: PostgresDatabase,
) -> None:
    url = postgres.url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(ConfigError, match=r'CREATE DATABASE "no_such_db"'):
        open_state_store(url, password=postgres.password)


def test_a_database_that_is_down_is_unavailable_not_misconfigured() -> None:
    with pytest.raises(StateUnavailableError, match="unreachable") as caught:
        open_state_store(f"postgresql://hub@127.0.0.1:{free_port()}/twinsync", timeout_s=2)
    assert caught.value.retryable


def test_the_store_survives_a_database_restart(tmp_path: Path) -> None:
    """A PostgreSQL crash fails requests with StateUnavailableError (retryable), and once
    it is back the same store works again: broken pooled connections are replaced."""
    with Postgres(tmp_path / "pg") as server:
        database = server.create_database("hub")
        with open_state_store(database.url, password=database.password, timeout_s=3) as store:
            with store.transaction() as tx:
                tx.insert("registry_meta", {"name": "generation", "value": 1})
            server.kill()
            with pytest.raises(StateUnavailableError), store.transaction(readonly=True) as tx:
                tx.execute("SELECT value FROM registry_meta")
            server.start()
            with store.transaction(readonly=True) as tx:
                assert tx.execute("SELECT value FROM registry_meta").scalar() == 1


def test_the_password_comes_from_password_file(tmp_path: Path, postgres: PostgresDatabase) -> None:
    state_settings = type(HubConfig().state)
    secret = tmp_path / "state.password"
    settings = state_settings.model_validate({"url": postgres.url, "password_file": secret})
    with pytest.raises(ConfigError, match=r"cannot read state\.password_file"):
        state_store_from(settings)
    secret.write_text(postgres.password + "\n")
    with state_store_from(settings) as store:
        assert store.version() == SCHEMA_VERSION
