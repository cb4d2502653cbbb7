#!/usr/bin/env bash
# Make a RabbitMQ node listen on 127.0.0.1 only: AMQP, the management API, Erlang distribution
# and the epmd it starts. A development machine's broker is no one else's business.
#
# Usage: bash scripts/rabbitmq-loopback.sh CONFIG_DIR [AMQP_PORT [MANAGEMENT_PORT]]
#   Appends a marked block to CONFIG_DIR/rabbitmq.conf and CONFIG_DIR/rabbitmq-env.conf
#   (created when missing) unless the block is already there: running it twice changes nothing.
# scripts/bootstrap.sh runs it on /etc/rabbitmq before it starts the machine's node;
# tests/test_rabbitmq_loopback.py runs it on a private node's directory and checks `ss -ltnp`.
set -euo pipefail

dir=${1:?usage: rabbitmq-loopback.sh CONFIG_DIR [AMQP_PORT [MANAGEMENT_PORT]]}
amqp_port=${2:-5672}
management_port=${3:-15672}
marker="# celery-queue-exporter: listen on loopback only"

mkdir -p "$dir"
conf="$dir/rabbitmq.conf"
env_conf="$dir/rabbitmq-env.conf"

if ! grep -qsF "$marker" "$conf"; then
  cat >>"$conf" <<EOF
$marker
listeners.tcp.default = 127.0.0.1:$amqp_port
management.tcp.ip = 127.0.0.1
management.tcp.port = $management_port
EOF
fi

# rabbitmq-env.conf is sourced by rabbitmq-env: NODE_IP_ADDRESS binds AMQP, ERL_EPMD_ADDRESS
# the epmd the node starts, inet_dist_use_interface the distribution port (AMQP + 20000).
# NODENAME rabbit@localhost: the CLI tools reach the node on 127.0.0.1 whatever the host name
# resolves to (Debian maps it to 127.0.1.1, where nothing listens now).
if ! grep -qsF "$marker" "$env_conf"; then
  cat >>"$env_conf" <<EOF
$marker
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$amqp_port
ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
fi
