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

import redis
import redis.sentinel

from ...config.model import BrokerConfig, BrokerTLS
from .options import RedisOptions

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379

#: kombu transport options redis-py's client takes as they are (others concern workers).
CLIENT_OPTIONS = ("health_check_interval", "socket_keepalive", "socket_keepalive_options")


def is_sentinel(broker: BrokerConfig[RedisOptions]) -> bool:
    return broker.url.scheme == SENTINEL_SCHEME


def tls_arguments(tls: BrokerTLS) -> dict[str, Any]:
    """redis-py's ssl_* arguments (the names kombu's broker_use_ssl uses for Redis)."""
    return {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_cert_reqs": tls.verify,
        "ssl_check_hostname": tls.verify == "required",
    }


def client_arguments(broker: BrokerConfig[RedisOptions], tls: bool) -> dict[str, Any]:
    """Transport options passed on, then TLS settings when the connection uses TLS."""
    arguments: dict[str, Any] = {}
    for key in CLIENT_OPTIONS:
        if key in broker.extra_transport_options:
            arguments[key] = broker.extra_transport_options[key]
    if broker.options.health_check_interval:
        arguments["health_check_interval"] = broker.options.health_check_interval
    if tls:
        arguments.update(tls_arguments(broker.tls))
    return arguments


def redis_client(broker: BrokerConfig[RedisOptions], **arguments: Any) -> redis.Redis:
    """A client of the broker (its master, for Sentinel); ``arguments`` go to redis-py."""
    if is_sentinel(broker):
        return _sentinel_master(broker, arguments)
    tls = broker.url.scheme == "rediss"
    url = broker.connect_url()
    return redis.Redis.from_url(url, **client_arguments(broker, tls), **arguments)


def _sentinel_master(broker: BrokerConfig[RedisOptions], arguments: dict[str, Any]) -> redis.Redis:
    first = broker.url.first
    sentinels = [
        (host or "localhost", port or DEFAULT_SENTINEL_PORT) for host, port in broker.url.hosts
    ]
    # The password given apart (password/password_file/env) replaces the URL's.
    password = broker.password if broker.password is not None else first.password
    # The sentinels' connections get the caller's timeouts, retry policy and connect hook too:
    # finding the master is part of every inspection, and its whole-call deadline must see
    # those sockets as well as the master's.
    shared = {
        key: value
        for key, value in arguments.items()
        if key.startswith("socket_") or key in ("retry", "redis_connect_func")
    }
    sentinel_kwargs = {**shared, **(broker.options.sentinel_kwargs or {})}
    # TLS to the master when the broker has tls: settings (kombu: broker_use_ssl).
    tls = broker.tls.configured
    master_arguments = {**client_arguments(broker, tls), **arguments}
    if tls:
        master_arguments["ssl"] = True
    manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        broker.options.master_name,
        db=int(broker.url.database or 0),
        username=first.username or None,
        password=password or None,
        **master_arguments,
    )


def follow_master(client: redis.Redis) -> None:
    """For a Sentinel client: ask where the master is now, and let go of idle connections to
    a former master (a no-op for other clients)."""
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        pool.proxy.get_master_address()
