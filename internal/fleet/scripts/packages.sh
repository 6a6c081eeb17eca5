# Installs what UPanel needs and the server lacks: Docker with compose, Caddy
# and git. With --plan it only prints the commands it would run.
set -eu
plan=0
[ "${1:-}" = "--plan" ] && plan=1
missing=""
command -v docker >/dev/null 2>&1 || missing="$missing docker.io"
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
	missing="$missing docker-compose"
fi
command -v caddy >/dev/null 2>&1 || missing="$missing caddy"
command -v git >/dev/null 2>&1 || missing="$missing git"
if [ -z "$missing" ]; then
	echo "Docker, compose, Caddy and git are installed"
	exit 0
fi
if [ "$plan" = 1 ]; then
	echo "apt-get update"
	echo "apt-get install -y --no-install-recommends$missing"
	exit 0
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # the list is fixed package names from above
apt-get install -y -qq --no-install-recommends $missing
systemctl enable --now docker >/dev/null 2>&1 || true
