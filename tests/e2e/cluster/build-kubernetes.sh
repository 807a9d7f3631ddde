#!/usr/bin/env bash
# Builds Kubernetes v1.37 (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl) and etcd v3.6, unmodified, from their Go modules through the Go module
# proxy, into $CACHE/bin; idempotent (binaries already built at the pinned versions are kept).
#
#   tests/e2e/cluster/build-kubernetes.sh        # CACHE defaults to ~/.cache/framescale-cluster
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with directories of
# its own repository; a module that requires it replaces them with the published k8s.io/*
# releases of the same minor (v0.37.x), read from k8s.io/kubernetes' own go.mod. etcd's server is
# a library: a three-line main calls etcdmain.Main, as etcd's own main does. Needs Go 1.26
# (/usr/local/go); about 30 min on 2 cores the first time.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
CACHE=${CACHE:-$HOME/.cache/framescale-cluster}
KUBERNETES=${KUBERNETES:-v1.37.2}
STAGING=v0.${KUBERNETES#v1.}
ETCD=${ETCD:-v3.6.16}
mkdir -p "$CACHE/bin" "$CACHE/src"
say() { echo "build-kubernetes [$SECONDS s]: $*" >&2; }

stamp_ok() { [ -f "$CACHE/bin/.$1.version" ] && [ "$(cat "$CACHE/bin/.$1.version")" = "$2" ]; }
# An empty Go module $CACHE/src/<name>, made the current directory.
fresh_module() {
  rm -rf "$CACHE/src/$1" && mkdir -p "$CACHE/src/$1" && cd "$CACHE/src/$1"
  go mod init "framescale.local/$1" >/dev/null 2>&1
}

if stamp_ok kubernetes "$KUBERNETES"; then
  say "kubernetes $KUBERNETES already built"
else
  fresh_module kubernetes
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  # The staging modules: required at exactly v0.0.0 (pseudo-versions are real releases).
  awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u | while read -r module; do
    go mod edit -replace "$module=$module@$STAGING"
  done
  say "kubernetes $KUBERNETES with $(grep -c '=>' go.mod) staging modules at $STAGING"
  commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  for command in "${commands[@]}"; do
    go get "k8s.io/kubernetes/cmd/$command@$KUBERNETES" 2>&1 | tail -2 >&2
  done
  for command in "${commands[@]}"; do
    say "go build $command"
    go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES" \
      -o "$CACHE/bin/$command" "k8s.io/kubernetes/cmd/$command"
  done
  echo "$KUBERNETES" >"$CACHE/bin/.kubernetes.version"
fi

if stamp_ok etcd "$ETCD"; then
  say "etcd $ETCD already built"
else
  fresh_module etcd
  cat >main.go <<'GO'
// etcd, as etcd's own main runs it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD" 2>&1 | tail -2 >&2
  go mod tidy 2>&1 | tail -2 >&2
  say "go build etcd $ETCD"
  go build -trimpath -ldflags "-s -w" -o "$CACHE/bin/etcd" .
  echo "$ETCD" >"$CACHE/bin/.etcd.version"
fi
say "done: $(ls "$CACHE/bin" | tr '\n' ' ')"
