#!/usr/bin/env bash
# A RabbitMQ 4.3 node beside the machine's own broker, for the tests: Debian
# forky's rabbitmq-server 4.3 (with its Erlang 29) installed into a
# debootstrapped chroot, since neither can be installed on Debian 12 itself.
#
#   local/rabbitmq43/rabbitmq43.sh start    # install once (2–4 min, ~340 MB), then start: prints the AMQP URL
#   local/rabbitmq43/rabbitmq43.sh stop     # stop the node (by pid) and unmount its /proc
#   local/rabbitmq43/rabbitmq43.sh status   # the node's version, or non-zero
#   local/rabbitmq43/rabbitmq43.sh url      # the AMQP URL
#   local/rabbitmq43/rabbitmq43.sh ctl ARGS # rabbitmqctl ARGS against the node
#
# The chroot is kept between runs on the same machine (OT_RABBIT43_ROOT,
# default /var/cache/ordertimeout/rabbitmq-4.3). The node has its own name,
# ports (AMQP OT_RABBIT43_PORT, default 5673; distribution port + 20000;
# epmd 4370), cookie and data, and runs as a uid no host user has, so it
# never touches the machine's node. Needs root (debootstrap, chroot, mount).
set -euo pipefail

root=${OT_RABBIT43_ROOT:-/var/cache/ordertimeout/rabbitmq-4.3}
port=${OT_RABBIT43_PORT:-5673}
dist=$((port + 20000))
epmd=${OT_RABBIT43_EPMD_PORT:-4370}
mirror=${OT_RABBIT43_MIRROR:-http://deb.debian.org/debian}
node=rabbit43@localhost
uid=64990 # no host user: files the node writes belong to nobody outside
home=/var/lib/ot43

say() { echo "rabbitmq43: $*" >&2; }

install() {
  if [ -x "$root/usr/sbin/rabbitmq-server" ]; then return 0; fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  say "installing Debian forky with rabbitmq-server into $root (2–4 min, once per machine)"
  rm -rf "$root.partial"
  mkdir -p "$(dirname "$root")"
  # Debian 12's debootstrap has no forky script: sid's is the same recipe.
  debootstrap --variant=minbase forky "$root.partial" "$mirror" /usr/share/debootstrap/scripts/sid >"$root.log" 2>&1 ||
    { say "debootstrap failed; see $root.log"; return 1; }
  # forky's Release file may be past its Valid-Until while the suite is in development.
  echo 'Acquire::Check-Valid-Until "false";' >"$root.partial/etc/apt/apt.conf.d/99ot-no-valid-until"
  mount -t proc proc "$root.partial/proc"
  if ! chroot "$root.partial" bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends rabbitmq-server' >>"$root.log" 2>&1; then
    umount "$root.partial/proc" || true
    say "installing rabbitmq-server failed; see $root.log"
    return 1
  fi
  umount "$root.partial/proc"
  # Debian's package starts nothing in a chroot; its user's uid may be a
  # host user's, so the node runs as $uid instead.
  mv "$root.partial" "$root"
}

pidfile() { echo "$root$home/rabbit.pid"; }

env43() {
  echo PATH=/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$home RABBITMQ_NODENAME=$node RABBITMQ_DIST_PORT=$dist ERL_EPMD_PORT=$epmd \
    RABBITMQ_MNESIA_BASE=$home/mnesia RABBITMQ_LOG_BASE=$home/log RABBITMQ_PID_FILE=$home/rabbit.pid \
    RABBITMQ_CONFIG_FILE=$home/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=$home/enabled_plugins
}

# The package's own scripts, not Debian's wrappers (those switch to the
# package's rabbitmq user, whose uid may be a host user's).
bin=/usr/lib/rabbitmq/bin

ctl() { chroot --userspec=$uid:$uid "$root" env $(env43) $bin/rabbitmqctl -q "$@"; }

running() { [ -f "$(pidfile)" ] && kill -0 "$(cat "$(pidfile)")" 2>/dev/null; }

start() {
  install
  if running && ctl status >/dev/null 2>&1; then url; return 0; fi
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  # minbase has no /etc/hosts: the node name's host must resolve.
  grep -qs '^127.0.0.1[[:space:]].*localhost' "$root/etc/hosts" || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >>"$root/etc/hosts"
  mkdir -p "$root$home/log" "$root$home/mnesia"
  [ -f "$root$home/.erlang.cookie" ] || head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$root$home/.erlang.cookie"
  chmod 400 "$root$home/.erlang.cookie"
  cat >"$root$home/rabbitmq.conf" <<CONF
listeners.tcp.default = $port
loopback_users = none
CONF
  echo '[].' >"$root$home/enabled_plugins"
  chown -R $uid:$uid "$root$home"
  say "starting $node on 127.0.0.1:$port"
  # Detached from this shell and its output, so a caller reading our output
  # is not held open by the node.
  setsid chroot --userspec=$uid:$uid "$root" env $(env43) $bin/rabbitmq-server >"$root$home/log/stdout.log" 2>&1 </dev/null &
  disown
  for _ in $(seq 1 90); do
    if ctl await_startup >/dev/null 2>&1; then url; return 0; fi
    sleep 1
  done
  say "the node did not start; see $root$home/log"
  return 1
}

stop() {
  if [ -f "$(pidfile)" ]; then
    pid=$(cat "$(pidfile)")
    ctl stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$(pidfile)"
  fi
  # epmd of the chroot (its own port) and anything else still inside it.
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
  done
  if mountpoint -q "$root/proc"; then umount "$root/proc" || umount -l "$root/proc"; fi
}

url() { echo "amqp://guest:guest@127.0.0.1:$port/"; }

status() { running && chroot --userspec=$uid:$uid "$root" env $(env43) $bin/rabbitmq-diagnostics -q server_version; }

case "${1:-}" in
  ctl) shift; ctl "$@" ;; # rabbitmqctl against the node (the outage tests' RABBITMQCTL)
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) url ;;
  *) echo "usage: $0 install|start|stop|status|url" >&2; exit 2 ;;
esac
