"""The hub's HTTP API, assembled: :func:`assemble_api` puts every area's routes on the
hub's parts (their contexts built here), :func:`start_api` serves the application behind
the connection gate, with TLS when configured.

Split out of _hub.py, whose :class:`~cloud_hub._hub.Hub` calls both once its parts are
built; what the assembly needs beyond the hub's public parts is passed by keyword.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from cloud_hub.api import (
    PROBE_LIFETIME_S,
    ConnectionGate,
    GatedSite,
    LabContext,
    PrivacyContext,
    RolloutContext,
    TriggerContext,
    add_lab_routes,
    add_privacy_routes,
    add_rollout_routes,
    add_trigger_routes,
    build_app,
    connection_cap,
    install,
    parse_where,
)
from cloud_hub.models import ModelPublisher, url_signer
from cloud_hub.store import Experiments, IndexReader, SegmentProfiles, StateStore
from protocol import SigningKey

from ._config import ApiSettings
from ._errors import ConfigError
from ._metrics import Metrics

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["assemble_api", "start_api"]


def assemble_api(
    hub: Hub,
    *,
    state: StateStore,
    key: SigningKey,
    ready: Callable[[], Awaitable[dict[str, bool]]],
    publish: Callable[[str, bytes], None],
    publisher: ModelPublisher,
    entropy: Callable[[int], bytes],
) -> web.Application:
    """The application with every route: the core API, then privacy, triggers, the
    strategy lab and rollouts, each on the parts of ``hub`` it serves."""
    config = hub.config
    app = build_app(
        reader=hub.reader,
        index=IndexReader(state=state) if config.index.enabled else None,
        metrics=hub.metrics,
        ready=ready,
        feed=hub.feed,
        keys=hub.api_keys,
        url_signer=url_signer(key),
        clock=hub.clock,
        profiles=SegmentProfiles(state=state) if config.index.enabled else None,
    )
    add_privacy_routes(
        app,
        PrivacyContext(
            subjects=hub.subjects,
            ledger=hub.ledger,
            blocks=hub.blocks,
            erasures=hub.erasures,
            objections=hub.objections,
            rectifier=hub.rectifier,
            consent=hub.consent,
            webhooks=hub.webhooks,
            reader=hub.reader,
            keys=hub.api_keys,
            influx=config.influx,
            retention=config.retention,
            tag_catalogs=hub.tags.catalogs,
        ),
    )
    add_trigger_routes(
        app,
        TriggerContext(
            rules=hub.trigger_rules,
            events=hub.trigger_events,
            parse_where=parse_where,
            write_timeout_s=config.triggers.stream_write_timeout_s,
        ),
    )
    # The strategy lab: forecasts and experiments over the twin query index.
    add_lab_routes(
        app,
        LabContext(
            experiments=Experiments(state=state, clock=hub.clock, entropy=entropy),
            index=IndexReader(state=state) if config.index.enabled else None,
            key=key,
            publish=publish,
        ),
    )
    add_rollout_routes(
        app,
        RolloutContext(
            repo=hub.models,
            store=hub.rollouts,
            publisher=publisher,
            reader=hub.reader,
            hub_keys={key.kid: key.public},
        ),
    )
    return app


async def start_api(
    app: web.Application, api: ApiSettings, *, metrics: Metrics
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` as ``api`` says; the runner (to clean up when the hub stops) and the
    port bound. A failure cleans the runner up before it is raised."""
    gate = ConnectionGate(
        connection_cap(api),
        api.probe_connections,
        min(PROBE_LIFETIME_S, api.idle_timeout_s),
        metrics,
    )
    install(app, gate, api.body_timeout_s)
    # aiohttp's keep-alive timer starts when a connection opens and is re-armed
    # after each answer: it closes idle connections and slow request heads alike.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=api.idle_timeout_s)
    try:
        await runner.setup()
        tls = None
        if api.tls_cert_file is not None and api.tls_key_file is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(api.tls_cert_file, api.tls_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the API's TLS certificate: {exc}") from exc
        site = GatedSite(
            runner,
            api.host,
            api.port,
            gate,
            ssl_context=tls,
            handshake_timeout_s=api.idle_timeout_s,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.bound_port
