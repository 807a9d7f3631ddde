#!/usr/bin/env bash
# A Kubernetes v1.37 control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
# as plain processes on 127.0.0.1, from the binaries tests/e2e/cluster/build-kubernetes.sh
# built, with Pod Security admission on (the API server's default since 1.25), and one Node
# object registered so that DaemonSets create pods. No kubelet: pods are admitted (or refused)
# and stay Pending, which is what checking admission and API contracts needs. (A 1.37 kubelet on
# this cgroup-v1 host with Debian's containerd 1.6 is not tried here.)
#
#   tests/e2e/cluster/control-plane.sh up      # prints the admin kubeconfig's path
#   tests/e2e/cluster/control-plane.sh down
#
# State under $RUN (default /tmp/framescale-cp): pki, etcd data, logs, pids.
set -euo pipefail
CACHE=${CACHE:-$HOME/.cache/framescale-cluster}
RUN=${RUN:-/tmp/framescale-cp}
B="$CACHE/bin"
PORT=${CP_PORT:-36443}
ETCD_PORT=${CP_ETCD_PORT:-32379}
P="$RUN/pki"
say() { echo "control-plane: $*" >&2; }

pki() {
  mkdir -p "$P" && cd "$P"
  [ -f ca.crt ] && return
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=framescale-cp-ca 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 30 -subj /CN=front-proxy-ca 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.97.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\n' >san.ext
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile san.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr -subj /CN=front-proxy-client 2>/dev/null
  openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial -out front-proxy-client.crt -days 30 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >admin.token
  printf '%s,admin,admin-uid,system:masters\n' "$(cat admin.token)" >tokens.csv
  cat >"$RUN/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: cp, cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$P/ca.crt"}}]
users: [{name: admin, user: {token: "$(cat admin.token)"}}]
contexts: [{name: cp, context: {cluster: cp, user: admin}}]
current-context: cp
KC
}

start() { # name command...
  local name=$1; shift
  "$@" >"$RUN/log/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

up() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$B/$b" ] || { say "missing $B/$b: run tests/e2e/cluster/build-kubernetes.sh"; exit 1; }
  done
  mkdir -p "$RUN/log" "$RUN/etcd"
  pki
  start etcd "$B/etcd" --name cp --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "cp=http://127.0.0.1:$((ETCD_PORT + 1))"
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null && break; sleep 0.5; done
  start apiserver "$B/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --service-cluster-ip-range=10.97.0.0/24 --cert-dir="$RUN/certs" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --token-auth-file="$P/tokens.csv" --authorization-mode=RBAC --allow-privileged=true \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key" \
    --endpoint-reconciler-type=none
  local k="$B/kubectl --kubeconfig $RUN/admin.kubeconfig"
  for _ in $(seq 120); do $k get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
  start kcm "$B/kube-controller-manager" --kubeconfig="$RUN/admin.kubeconfig" \
    --authentication-kubeconfig="$RUN/admin.kubeconfig" --authorization-kubeconfig="$RUN/admin.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=$((PORT + 1)) --leader-elect=false --controllers='*' \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" --use-service-account-credentials=false \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --service-cluster-ip-range=10.97.0.0/24
  start scheduler "$B/kube-scheduler" --kubeconfig="$RUN/admin.kubeconfig" \
    --authentication-kubeconfig="$RUN/admin.kubeconfig" --authorization-kubeconfig="$RUN/admin.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=$((PORT + 2)) --leader-elect=false
  # One Node, so DaemonSets create pods (no kubelet behind it: they stay Pending).
  $k apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata: {name: cp-node, labels: {kubernetes.io/os: linux, kubernetes.io/hostname: cp-node}}
NODE
  say "up: $($k version 2>/dev/null | grep Server); export KUBECONFIG=$RUN/admin.kubeconfig"
  echo "$RUN/admin.kubeconfig"
}

down() {
  local pids=()
  for name in scheduler kcm apiserver etcd; do
    [ -f "$RUN/$name.pid" ] && pids+=("$(cat "$RUN/$name.pid")")
    rm -f "$RUN/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || { say "nothing running"; return; }
  kill "${pids[@]}" 2>/dev/null || true
  # The API server shuts down gracefully (seconds); what is still there after 30 s is killed.
  for _ in $(seq 30); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  say down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
