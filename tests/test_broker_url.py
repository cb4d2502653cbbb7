"""The broker URL value object (config/urls.py BrokerURL): parsed once when a broker's
configuration is built, read by every stop. Pure: no service."""

from __future__ import annotations

import pytest

from celery_queue_exporter.config import BrokerURL, ConfigError
from celery_queue_exporter.config.brokers import new_broker


def test_a_sentinel_list_is_one_url_with_every_host():
    url = BrokerURL.parse("sentinel://:pw@a:26379/2;sentinel://b")
    assert url.scheme == "sentinel"
    assert url.schemes == frozenset({"sentinel"})
    assert url.hosts == (("a", 26379), ("b", None))
    assert (url.database, url.username, url.password) == ("2", "", "pw")
    assert url.redacted == "sentinel://a:26379/2;sentinel://b"
    assert repr(url) == "BrokerURL('sentinel://a:26379/2;sentinel://b')"
    assert repr(url.first) == "URLPart('sentinel://a:26379/2')"


@pytest.mark.parametrize(
    ("path", "vhost"),
    [("", "/"), ("/", "/"), ("//", "/"), ("/%2F", "/"), ("/prod", "prod"), ("/a%2Fb", "a/b")],
)
def test_the_vhost_as_kombu_reads_it(path, vhost):
    assert BrokerURL.parse(f"amqp://h{path}").vhost == vhost


def test_credentials_stay_apart_and_go_back_in_only_for_connecting():
    url = BrokerURL.parse("amqp://us%40er:p%2Fw@[::1]:5673/v")
    assert (url.username, url.password) == ("us@er", "p/w")
    assert (url.first.host, url.first.port) == ("::1", 5673)
    assert url.redacted == "amqp://[::1]:5673/v"
    assert url.with_password("n:w/") == "amqp://us%40er:n%3Aw%2F@[::1]:5673/v"
    broker = new_broker("b", "amqp://us%40er:p%2Fw@[::1]:5673/v", password="n:w/")
    assert broker.connect_url() == "amqp://us%40er:n%3Aw%2F@[::1]:5673/v"
    assert broker.safe_url == "amqp://[::1]:5673/v"
    assert repr(broker) == "BrokerConfig(name='b', url='amqp://[::1]:5673/v')"


def test_an_unparsable_url_names_the_field_never_the_url():
    with pytest.raises(ConfigError) as error:
        BrokerURL.parse("redis://u:se/cret@h/0", where="brokers[0].url")
    assert str(error.value) == (
        "brokers[0].url: cannot parse the URL (is a special character such as / ? # @ in the "
        "password? percent-encode it, or use password_file / password_env)"
    )


def test_a_broker_carries_its_transport_and_typed_options():
    redis = new_broker("r", "rediss://h:6380/4", sep=":", queues=["q"])
    assert (redis.transport.name, redis.url.database, redis.options.sep) == ("redis", "4", ":")
    assert type(redis.options).__name__ == "RedisOptions"
    rabbit = new_broker("a", "amqps://h/prod", management="never")
    assert (rabbit.transport.name, rabbit.url.vhost, rabbit.options.management) == (
        "rabbitmq",
        "prod",
        "never",
    )
    with pytest.raises(TypeError, match="a rabbitmq broker has no setting 'sep'"):
        new_broker("a", "amqp://h//", sep=":")
    with pytest.raises(AttributeError):  # frozen: set through the assembly, not by hand
        rabbit.options.management = "always"  # type: ignore[misc]
