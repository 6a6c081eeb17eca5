#!/usr/bin/env bash
# Regenerates internal/auth/common-passwords.txt.gz, the list that password
# checks refuse, from zxcvbn's password frequency list (MIT; see
# docs/third-party.md). Lower-cased, de-duplicated, sorted.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=github.com/trustelem/zxcvbn@v1.0.1
dir=$(go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
awk '{print tolower($1)}' "$dir/data/passwords.txt" | LC_ALL=C sort -u | gzip -9n > internal/auth/common-passwords.txt.gz
echo "wrote internal/auth/common-passwords.txt.gz ($(zcat internal/auth/common-passwords.txt.gz | wc -l) passwords)"
