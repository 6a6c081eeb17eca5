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

# start_docker makes sure a Docker daemon answers on /var/run/docker.sock,
# starting a private one (vfs storage, no iptables rules) when none does, then
# builds the test-host image (scripts/testhost-image.sh, once per machine) and
# exports UPANEL_TEST_DOCKER=1 for internal/testhost. stop_services stops the
# daemon only if this started it. Images persist in its data root across runs.
start_docker() {
	need_packages dockerd:docker.io docker-compose:docker-compose debootstrap:debootstrap || return 1
	export DOCKER_HOST=unix:///var/run/docker.sock # the local daemon, whatever the user's context says
	if ! docker version >/dev/null 2>&1 && ! { sleep 2 && docker version >/dev/null 2>&1; }; then
		if [ "$(id -u)" != 0 ]; then
			echo "services: no Docker daemon answers, and starting one needs root" >&2
			return 1
		fi
		local run=/run/upanel-dockerd
		mkdir -p "$run"
		if [ -s "$run/dockerd.pid" ] && kill -0 "$(cat "$run/dockerd.pid")" 2>/dev/null; then
			echo "services: a dockerd (pid $(cat "$run/dockerd.pid")) runs but does not answer; see $run/dockerd.log" >&2
			return 1
		fi
		rm -f "$run/dockerd.pid" # stale; dockerd replaces a stale socket itself
		dockerd --storage-driver=vfs --iptables=false --data-root /var/lib/docker-upanel \
			--exec-root "$run/exec" --pidfile "$run/dockerd.pid" -H unix:///var/run/docker.sock \
			>"$run/dockerd.log" 2>&1 &
		UPANEL_DOCKERD_PID=$!
		local waited=0
		until docker version >/dev/null 2>&1; do
			if ! kill -0 "$UPANEL_DOCKERD_PID" 2>/dev/null || [ $waited -ge 60 ]; then
				tail -n 20 "$run/dockerd.log" >&2
				echo "services: dockerd did not answer within 60 s; see $run/dockerd.log" >&2
				return 1
			fi
			sleep 1
			waited=$((waited + 1))
		done
		echo "services: Docker daemon (vfs) started on /var/run/docker.sock in ${waited} s" >&2
	fi
	./scripts/testhost-image.sh || return 1
	export UPANEL_TEST_DOCKER=1
}

stop_services() {
	if [ -n "${UPANEL_PG_DIR:-}" ]; then
		"${UPANEL_PG_AS[@]}" "$(pg_bin)/pg_ctl" -D "$UPANEL_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
		rm -rf "$UPANEL_PG_DIR"
		UPANEL_PG_DIR=
	fi
	if [ -n "${UPANEL_DOCKERD_PID:-}" ]; then
		kill -TERM "$UPANEL_DOCKERD_PID" 2>/dev/null || true
		local i
		for i in $(seq 1 30); do
			kill -0 "$UPANEL_DOCKERD_PID" 2>/dev/null || break
			sleep 1
		done
		kill -KILL "$UPANEL_DOCKERD_PID" 2>/dev/null || true
		UPANEL_DOCKERD_PID=
	fi
}
