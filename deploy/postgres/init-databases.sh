#!/bin/sh
# Runs once, when the Postgres volume is first initialised (the official
# image runs /docker-entrypoint-initdb.d/*). Each Retain service owns one
# database and no service reads another's tables (ARCHITECTURE.md, section
# 1). All five are created now, so adding a service to the compose file
# later does not mean wiping the volume; an unused empty database costs
# nothing. Each service creates its own tables (migrations at start-up).
set -eu
for db in ${RETAIN_DATABASES:-retain_ingest retain_metrics retain_churnsignal retain_campaign retain_notifier}; do
  echo "creating database $db"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
