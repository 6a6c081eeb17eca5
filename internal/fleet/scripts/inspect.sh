# Prints the machine architecture and the distribution, one per line.
set -eu
uname -m
. /etc/os-release
echo "${ID:-unknown}"
echo "${VERSION_ID:-}"
