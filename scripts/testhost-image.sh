#!/usr/bin/env bash
# Builds the Docker image that end-to-end tests boot as Debian test hosts
# (internal/testhost): Debian bookworm with systemd, OpenSSH, Docker with
# compose v1, Caddy, git, ufw, fail2ban and unattended-upgrades, like a VPS
# image that ships them. It debootstraps a root filesystem and imports it with
# "docker import", once per machine: when the image tag exists it does nothing.
# Needs root, debootstrap and a running Docker daemon; safe to re-run, and runs
# that overlap wait for each other.
set -euo pipefail

# TAG must match testhost.Image. Bump its version whenever PACKAGES or the
# changes to the root filesystem below change, so that machines rebuild.
TAG=upanel-testhost:bookworm-v2
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,openssh-server,sudo,ca-certificates,curl,iproute2,git,docker.io,docker-compose,caddy,ufw,fail2ban,iptables,unattended-upgrades,python3-systemd
CACHE=${UPANEL_TESTHOST_CACHE:-/var/tmp/upanel-testhost}

log() { echo "testhost-image: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# apt_mirror prints the first Debian mirror this machine's apt uses, if any
# (debootstrap picks its default mirror otherwise). UPANEL_TESTHOST_MIRROR wins.
apt_mirror() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n 1 | tr -d '[:space:]' || true
}

have_image() { docker image inspect "$TAG" >/dev/null 2>&1; }

command -v docker >/dev/null || die "docker is not installed (scripts/services.sh start_docker installs and starts it)"
docker version >/dev/null 2>&1 || die "no Docker daemon answers (scripts/services.sh start_docker starts one)"
if have_image; then
	log "$TAG is present"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "building $TAG needs root"
command -v debootstrap >/dev/null || die "building $TAG needs debootstrap (apt-get install debootstrap)"

mkdir -p "$CACHE/debs"
exec 9>"$CACHE/lock"
if ! flock -n 9; then
	log "waiting for another build of $TAG to finish"
	flock 9
fi
if have_image; then
	log "$TAG is present (built by another run)"
	exit 0
fi

rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
cleanup() {
	# debootstrap leaves /proc and /sys mounted inside when it fails half way.
	{ grep -o " $rootfs/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
	rm -rf --one-file-system "$rootfs" || log "could not remove $rootfs"
}
trap cleanup EXIT
chmod 0755 "$rootfs" # becomes the image's /, which mktemp made 0700

mirror=${UPANEL_TESTHOST_MIRROR:-$(apt_mirror)}
start=$SECONDS
log "building $TAG: debootstrap $SUITE into $rootfs (about 2 minutes; log in $CACHE/debootstrap.log)"
if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs" \
	"$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$CACHE/debootstrap.log" 2>&1; then
	tail -n 30 "$CACHE/debootstrap.log" >&2
	die "debootstrap failed; see $CACHE/debootstrap.log"
fi
log "debootstrap done in $((SECONDS - start)) s"

# Like a cloud image, every host makes its own SSH host keys and machine id on
# first boot, so that no two test hosts share them.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat >"$rootfs/etc/systemd/system/ssh.service.d/upanel-testhost.conf" <<'EOF'
# Test-host image: generate missing host keys before sshd checks its config.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
: >"$rootfs/etc/machine-id"
# The first-boot wizard would wait for a console that a container lacks.
ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-firstboot.service"
rm -f "$rootfs"/var/cache/apt/archives/*.deb

log "importing into Docker as $TAG"
tar -C "$rootfs" --numeric-owner -c . |
	docker import --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' - "$TAG" >/dev/null
log "built $TAG in $((SECONDS - start)) s"
