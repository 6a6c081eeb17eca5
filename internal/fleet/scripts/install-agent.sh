# Installs the agent files that the panel uploaded to the staging directory of
# the user it signs in as, starts the agent under systemd, and prints its TLS
# certificate, which the panel pins.
set -eu
stage="$(getent passwd "${SUDO_USER:?}" | cut -d: -f6)/.upanel-stage"
install -m 0755 -o root -g root "$stage/upanel-agent" /usr/local/bin/upanel-agent.new
mv -f /usr/local/bin/upanel-agent.new /usr/local/bin/upanel-agent
install -d -m 0700 -o root -g root /etc/upanel-agent /var/lib/upanel-agent
install -m 0600 -o root -g root "$stage/config.json" /etc/upanel-agent/config.json
install -m 0644 -o root -g root "$stage/upanel-agent.service" /etc/systemd/system/upanel-agent.service
rm -rf "$stage"
systemctl daemon-reload
systemctl enable upanel-agent >/dev/null 2>&1
systemctl restart upanel-agent
i=0
while [ ! -s /etc/upanel-agent/cert.pem ] && [ "$i" -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
if [ ! -s /etc/upanel-agent/cert.pem ]; then
	echo "the agent did not start:" >&2
	journalctl -u upanel-agent --no-pager -n 20 >&2 || true
	exit 1
fi
echo "agent $(/usr/local/bin/upanel-agent -version) is running"
echo "-----AGENT CERTIFICATE-----"
cat /etc/upanel-agent/cert.pem
