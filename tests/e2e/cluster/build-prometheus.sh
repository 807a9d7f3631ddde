#!/usr/bin/env bash
# Builds Prometheus 3 (prometheus and promtool) and prometheus-adapter, unmodified, from their Go
# modules through the Go module proxy, into $CACHE/bin; idempotent (a binary already built at the
# pinned version is kept). Used by scripts/prometheus3 and scripts/bench-incumbent.
#
#   tests/e2e/cluster/build-prometheus.sh        # CACHE defaults to ~/.cache/framescale-cluster
#
# Pinned: Prometheus v3.16.0 (Go module github.com/prometheus/prometheus v0.316.0) and
# prometheus-adapter v0.12.0 (sigs.k8s.io/prometheus-adapter). Needs Go 1.24+ (/usr/local/go).
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
CACHE=${CACHE:-$HOME/.cache/framescale-cluster}
PROMETHEUS_MODULE=v0.316.0
ADAPTER_VERSION=${ADAPTER_VERSION:-v0.12.0}
mkdir -p "$CACHE/bin" "$CACHE/src"
say() { echo "build-prometheus [$SECONDS s]: $*" >&2; }

build() { # name version packages...
  local name=$1 version=$2; shift 2
  local stamp="$CACHE/bin/.$name.version"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
    say "$name $version already built"
    return
  fi
  local dir="$CACHE/src/$name"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    go mod init "framescale.local/$name" >/dev/null 2>&1
    for package in "$@"; do
      say "$name: go get $package@$version"
      go get "$package@$version" 2>&1 | tail -3 >&2
    done
    for package in "$@"; do
      say "$name: go build $package"
      go build -trimpath -ldflags "-s -w" -o "$CACHE/bin/" "$package"
    done
  )
  echo "$version" >"$stamp"
}

build prometheus "$PROMETHEUS_MODULE" \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
build prometheus-adapter "$ADAPTER_VERSION" \
  sigs.k8s.io/prometheus-adapter/cmd/adapter
say "done: $(ls "$CACHE/bin" | tr '\n' ' ')"
