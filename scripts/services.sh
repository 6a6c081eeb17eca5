# shellcheck shell=bash
# Test services for "make test" and "make bench": installs what the tests need
# (as root, on Debian) and starts private instances that die with the calling
# script. Source it; don't run it.

# need_packages installs the Debian packages whose commands are missing.
# usage: need_packages cmd:package [cmd:package...]
need_packages() {
	local missing=() pair cmd pkg
	for pair in "$@"; do
		cmd=${pair%%:*} pkg=${pair#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$cmd" >/dev/null 2>&1; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "services: missing ${missing[*]}; run as root on Debian to install them" >&2
		return 1
	fi
	echo "services: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] || { echo "services: PostgreSQL binaries not found" >&2; return 1; }
	echo "$d"
}

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# start_postgres starts a throwaway PostgreSQL on 127.0.0.1 and exports
# UPANEL_TEST_POSTGRES_URL. It is stopped and removed by stop_services.
start_postgres() {
	need_packages initdb:postgresql pg_dump:postgresql-client || return 1
	local bin dir port as=()
	bin=$(pg_bin) || return 1
	dir=$(mktemp -d /tmp/upanel-pg.XXXXXX)
	port=$(free_port)
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
		chown postgres "$dir"
		as=(runuser -u postgres --)
	fi
	"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; return 1; }
	"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
	UPANEL_PG_DIR=$dir
	UPANEL_PG_AS=("${as[@]}")
	export UPANEL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	echo "services: PostgreSQL on 127.0.0.1:$port" >&2
}

stop_services() {
	if [ -n "${UPANEL_PG_DIR:-}" ]; then
		"${UPANEL_PG_AS[@]}" "$(pg_bin)/pg_ctl" -D "$UPANEL_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
		rm -rf "$UPANEL_PG_DIR"
		UPANEL_PG_DIR=
	fi
}
