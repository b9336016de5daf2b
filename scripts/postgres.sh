#!/usr/bin/env bash
# Installs Debian's PostgreSQL server programs for the PostgreSQL store's
# tests (herd_testkit::postgres starts a throwaway cluster from them as an
# unprivileged user). Does nothing when /usr/lib/postgresql/*/bin/postgres
# exists. On a fresh Debian machine it takes a minute or two: apt-get update
# plus about 50 MB of packages (the server, its client, LLVM's and ICU's
# libraries).
#
# No cluster is created or started by the install: the tests make their own.
set -euo pipefail

if compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    exit 0
fi
echo "postgres: installing Debian's postgresql for the store tests" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
# Debian's package makes and starts a "main" cluster unless told not to.
$sudo mkdir -p /etc/postgresql-common
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
