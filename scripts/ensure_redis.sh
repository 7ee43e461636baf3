#!/usr/bin/env bash
# Make sure a Redis answers at 127.0.0.1:6379 for the tests; start one if not.
# (TEST_REDIS_URL picks the database the tests use; this script always checks 127.0.0.1:6379.)
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "redis-server is not installed (apt-get install redis-server)" >&2
  exit 1
fi
# As root (CI) Debian's usual places; otherwise, or where those are not writable, a private
# temporary directory for its working files and log (the server keeps nothing on disk).
dir=/var/lib/redis
log=/var/log/redis/ci.log
if ! { mkdir -p "$dir" "$(dirname "$log")" 2>/dev/null && [ -w "$dir" ] && [ -w "$(dirname "$log")" ]; }; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/test-redis.XXXXXX")
  log=$dir/redis.log
fi
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
  --dir "$dir" --logfile "$log"
for _ in $(seq 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "Redis did not start (its log: $log)" >&2
exit 1
