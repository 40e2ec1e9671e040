#!/usr/bin/env bash
# Checks the tools `make test` needs and says how to get each missing one.
set -euo pipefail
missing=0
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "prerequisites: '$1' not found: $2" >&2
    missing=1
  fi
}
need cargo "install Rust stable with rustup (https://rustup.rs)"
need go "install Go 1.26 or newer (https://go.dev/doc/install)"
need flock "install util-linux (Debian: apt-get install util-linux)"
need sha256sum "install coreutils"
if command -v cargo >/dev/null 2>&1; then
  cargo fmt --version >/dev/null 2>&1 || { echo "prerequisites: rustfmt missing: rustup component add rustfmt" >&2; missing=1; }
  cargo clippy --version >/dev/null 2>&1 || { echo "prerequisites: clippy missing: rustup component add clippy" >&2; missing=1; }
fi
exit "$missing"
