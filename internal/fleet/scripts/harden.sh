# Hardens the server: SSH without root or passwords, ufw allowing only SSH,
# HTTP(S) and the agent, fail2ban guarding SSH, unattended security upgrades.
# Arguments: SSH port, agent port (integers), the panel's address as this
# server sees it (exempt from fail2ban); all checked here too.
set -eu
ssh_port="$1"
agent_port="$2"
panel_ip="$3"
case "$ssh_port$agent_port" in "" | *[!0-9]*) echo "bad port" >&2; exit 2 ;; esac
case "$panel_ip" in "" | *[!0-9a-fA-F:.]*) echo "bad panel address" >&2; exit 2 ;; esac
export DEBIAN_FRONTEND=noninteractive
missing=""
command -v ufw >/dev/null 2>&1 || missing="$missing ufw"
command -v fail2ban-client >/dev/null 2>&1 || missing="$missing fail2ban"
command -v unattended-upgrade >/dev/null 2>&1 || missing="$missing unattended-upgrades"
# fail2ban reads the journal (Debian 12 has no auth.log) through python3-systemd.
python3 -c 'import systemd.journal' >/dev/null 2>&1 || missing="$missing python3-systemd"
if [ -n "$missing" ]; then
	echo "installing:$missing"
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi

echo "== SSH: no root login, no passwords"
# sshd keeps the first value it reads, and reads drop-ins in name order: 00-
# comes before a provider's 50-cloud-init.conf. A drop-in sorting earlier
# still is caught by the check below.
rm -f /etc/ssh/sshd_config.d/10-upanel.conf
cat > /etc/ssh/sshd_config.d/00-upanel.conf <<'CONF'
# Written by UPanel hardening.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
CONF
sshd -t
effective="$(sshd -T)"
for want in "permitrootlogin no" "passwordauthentication no" "kbdinteractiveauthentication no"; do
	if ! printf '%s\n' "$effective" | grep -qx "$want"; then
		echo "sshd does not apply \"$want\": another file in /etc/ssh/sshd_config.d sets it first:" >&2
		grep -il "^[[:space:]]*${want%% *}" /etc/ssh/sshd_config.d/*.conf >&2 || true
		exit 1
	fi
done
systemctl reload ssh 2>/dev/null || systemctl reload sshd

echo "== firewall: deny inbound but SSH, HTTP, HTTPS and the agent"
ufw --force reset >/dev/null
ufw default deny incoming >/dev/null
ufw default allow outgoing >/dev/null
ufw allow "$ssh_port/tcp" >/dev/null
# Every port sshd listens on stays open, so a port forwarded to the server
# under another number never locks the panel out.
for p in $(sshd -T | awk '$1 == "port" { print $2 }'); do
	ufw allow "$p/tcp" >/dev/null
done
ufw allow 80/tcp >/dev/null
ufw allow 443/tcp >/dev/null
ufw allow "$agent_port/tcp" >/dev/null
ufw --force enable
ufw status verbose

echo "== fail2ban: sshd jail"
cat > /etc/fail2ban/jail.d/upanel.local <<CONF
# Written by UPanel hardening.
[DEFAULT]
backend = systemd
ignoreip = 127.0.0.1/8 ::1 $panel_ip
[sshd]
enabled = true
port = $ssh_port
maxretry = 5
findtime = 10m
bantime = 1h
CONF
systemctl enable fail2ban >/dev/null 2>&1
systemctl restart fail2ban
i=0
until fail2ban-client status sshd >/dev/null 2>&1 || [ "$i" -ge 50 ]; do sleep 0.2; i=$((i + 1)); done
fail2ban-client status sshd

echo "== unattended security upgrades"
cat > /etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
CONF
echo "hardening applied"
