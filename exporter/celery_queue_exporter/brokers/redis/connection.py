"""The one place Redis clients are made, for the inspector and the event consumer alike:
plain ``redis://``, TLS ``rediss://`` (CA, client certificate, verification mode) and kombu's
Sentinel URLs ``sentinel://host:26379;sentinel://host2:26379`` with ``master_name``.

Sentinel: the client asks the sentinels for the master's address; ``follow_master`` asks again
(one round trip to a sentinel) and drops idle connections to a demoted master, so the next
command goes to the new one. As in kombu, the password of the URL is the master's; the
sentinels' own credentials go in ``sentinel_kwargs``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel

from ...config.model import BrokerConfig, BrokerTLS
from ...config.urls import split_url_list

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379

#: kombu transport options redis-py's client takes as they are (others concern workers).
CLIENT_OPTIONS = ("health_check_interval", "socket_keepalive", "socket_keepalive_options")


def is_sentinel(broker: BrokerConfig) -> bool:
    return urlsplit(split_url_list(broker.url)[0]).scheme == SENTINEL_SCHEME


def tls_arguments(tls: BrokerTLS) -> dict[str, Any]:
    """redis-py's ssl_* arguments (the names kombu's broker_use_ssl uses for Redis)."""
    return {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_cert_reqs": tls.verify,
        "ssl_check_hostname": tls.verify == "required",
    }


def client_arguments(broker: BrokerConfig, tls: bool) -> dict[str, Any]:
    """Transport options passed on, then TLS settings when the connection uses TLS."""
    arguments: dict[str, Any] = {}
    for key in CLIENT_OPTIONS:
        if key in broker.extra_transport_options:
            arguments[key] = broker.extra_transport_options[key]
    if broker.health_check_interval:
        arguments["health_check_interval"] = broker.health_check_interval
    if tls:
        arguments.update(tls_arguments(broker.tls))
    return arguments


def redis_client(broker: BrokerConfig, **arguments: Any) -> redis.Redis:
    """A client of the broker (its master, for Sentinel); ``arguments`` go to redis-py."""
    url = broker.connect_url()
    if is_sentinel(broker):
        return _sentinel_master(broker, split_url_list(url), arguments)
    tls = urlsplit(url).scheme == "rediss"
    return redis.Redis.from_url(url, **client_arguments(broker, tls), **arguments)


def _sentinel_master(
    broker: BrokerConfig, urls: list[str], arguments: dict[str, Any]
) -> redis.Redis:
    first = urlsplit(urls[0])
    sentinels = [
        (parts.hostname or "localhost", parts.port or DEFAULT_SENTINEL_PORT)
        for parts in map(urlsplit, urls)
    ]
    # The sentinels' connections get the caller's timeouts, retry policy and connect hook too:
    # finding the master is part of every inspection, and its whole-call deadline must see
    # those sockets as well as the master's.
    shared = {
        key: value
        for key, value in arguments.items()
        if key.startswith("socket_") or key in ("retry", "redis_connect_func")
    }
    sentinel_kwargs = {**shared, **(broker.sentinel_kwargs or {})}
    # TLS to the master when the broker has tls: settings (kombu: broker_use_ssl).
    tls = broker.tls.configured
    master_arguments = {**client_arguments(broker, tls), **arguments}
    if tls:
        master_arguments["ssl"] = True
    manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        broker.master_name,
        db=int(first.path.lstrip("/") or 0),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
        **master_arguments,
    )


def follow_master(client: redis.Redis) -> None:
    """For a Sentinel client: ask where the master is now, and let go of idle connections to
    a former master (a no-op for other clients)."""
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        pool.proxy.get_master_address()
