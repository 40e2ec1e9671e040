#!/usr/bin/env bash
# Builds the kube-reloader container image without a container engine: a static binary, one
# layer on an empty base (like FROM scratch), written as an OCI image layout.
#
#   target/image/oci/                              the OCI image layout (index.json, blobs/)
#   target/image/kube-reloader-<version>.oci.tar   the same as one archive
#
# Push or load it with any OCI tool, e.g.
#   skopeo copy oci-archive:target/image/kube-reloader-0.1.0.oci.tar docker://registry.example.com/kube-reloader:0.1.0
#   podman load -i target/image/kube-reloader-0.1.0.oci.tar      (Docker 25+: docker load -i …)
#
# The binary is glibc-static (`-C target-feature=+crt-static` on x86_64-unknown-linux-gnu, a
# static PIE): the pinned toolchain has no musl target, and rustls means no OpenSSL to link.
# The layer holds the binary at /kube-reloader, /etc/passwd and /etc/group with the nonroot user
# 65532, the CA bundle of the build host (for HTTPS webhooks and alerts) and an empty /tmp. The
# layer is reproducible: sorted entries, fixed owners and modes, mtimes from the commit time.
# deploy/Dockerfile builds the equivalent image where a container engine exists.
#
# Usage: scripts/build-image.sh
# Env:   SOURCE_DATE_EPOCH  timestamp for files and labels (default: the HEAD commit time)
#        CA_BUNDLE          CA certificates to include (default: /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=x86_64-unknown-linux-gnu
out="$root/target/image"
layout="$out/oci"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
log() { echo "build-image: $*" >&2; }

for tool in cargo tar gzip sha256sum; do
  command -v "$tool" >/dev/null || { log "error: '$tool' is not on PATH"; exit 1; }
done
if [ ! -s "$ca_bundle" ]; then
  log "error: no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates, or set CA_BUNDLE)"
  exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"

log "building the static binary (release, $target, +crt-static)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --release --target "$target" --bin kube-reloader
binary="$root/target/$target/release/kube-reloader"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/kube-reloader"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chmod 0755 "$rootfs/etc" "$rootfs/etc/ssl" "$rootfs/etc/ssl/certs"
chmod 1777 "$rootfs/tmp"

tar --create --file="$work/layer.tar" --directory="$rootfs" \
  --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  etc kube-reloader tmp
gzip -n -9 --stdout "$work/layer.tar" > "$work/layer.tar.gz"

rm -rf "$layout"
mkdir -p "$layout/blobs/sha256"
# blob FILE: stores FILE under its digest; prints "sha256:<hex> <size>".
blob() {
  local digest size
  digest="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  cp "$1" "$layout/blobs/sha256/$digest"
  echo "sha256:$digest $size"
}

diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
read -r layer_digest layer_size < <(blob "$work/layer.tar.gz")

labels="\"org.opencontainers.image.title\":\"kube-reloader\",\
\"org.opencontainers.image.description\":\"Rolls Kubernetes workloads when the ConfigMaps and Secrets they use change; a drop-in replacement for stakater/Reloader\",\
\"org.opencontainers.image.version\":\"$version\",\
\"org.opencontainers.image.revision\":\"$revision\",\
\"org.opencontainers.image.created\":\"$created\",\
\"org.opencontainers.image.licenses\":\"Apache-2.0\""

printf '%s' "{\"created\":\"$created\",\"architecture\":\"amd64\",\"os\":\"linux\",\
\"config\":{\"User\":\"65532:65532\",\"ExposedPorts\":{\"9090/tcp\":{}},\
\"Env\":[\"PATH=/\",\"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\"],\
\"Entrypoint\":[\"/kube-reloader\"],\"WorkingDir\":\"/\",\"Labels\":{$labels}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"scripts/build-image.sh\"}]}" > "$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer_digest\",\"size\":$layer_size}],\
\"annotations\":{$labels}}" > "$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},\
\"annotations\":{\"org.opencontainers.image.ref.name\":\"$version\"}}]}" > "$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"

archive="$out/kube-reloader-$version.oci.tar"
tar --create --file="$archive" --directory="$layout" \
  --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  oci-layout index.json blobs
log "image $version ($manifest_digest): layer $((layer_size / 1024)) KiB compressed, binary $(( $(stat -c %s "$binary") / 1024 )) KiB"
log "wrote $layout and $archive"
