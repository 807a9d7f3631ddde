#!/usr/bin/env bash
# tests/e2e/e2e.py on a one-node Kubernetes v1.37, with one command, build included: Kubernetes
# v1.37.2 and etcd 3.6.16 built unmodified from their Go modules (build-kubernetes.sh), the
# framescale image (scripts/build-images). The node's plumbing comes from the k8s-local harness
# (a test aid kept beside the project: containerd, the bridge CNI, the pause image, the PKI and
# kubeconfigs): its `node.sh up` starts a 1.20 node, whose etcd, control plane, kubelet and
# kube-proxy this script then replaces with the 1.37 builds on the same ports, PKI and
# containerd (a fresh etcd). The 1.37 kubelet runs on this cgroup-v1 host with
# `failCgroupV1: false`, against Debian's containerd 1.6. Pod Security is enforced (1.37's
# default admission); the e2e labels the release's namespace restricted and the exporter's
# privileged, runs `framescale doctor` healthy and with the adapter gone for a minute, and stops
# everything whatever happens. Then tests/e2e/queue.py: queue mode with the bundled Redis (an image
# of Debian's redis-server, scripts/build-images --redis), scale to zero and back (HPAScaleToZero
# is on by default in 1.37), a queue outage and a killed render pod in the middle of a job.
#
#   tests/e2e/cluster/k8s-137.sh /path/to/k8s-local      # as root, the harness built (build.sh)
#   QUEUE_ONLY=1 tests/e2e/cluster/k8s-137.sh /path/to/k8s-local   # queue.py only
set -euo pipefail
cd "$(dirname "$0")/../../.."
harness=$(cd "${1:?give the k8s-local harness directory (with node.sh)}" && pwd)
export K8S_RUN=${K8S_RUN:-/tmp/framescale-k8s-run}
export CACHE=${CACHE:-$HOME/.cache/framescale-cluster}
RUN137=${RUN137:-/tmp/framescale-k8s-137}
B="$CACHE/bin"
python=${FRAMESCALE_TEST_PYTHON:-target/test-python/bin/python}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
say() { echo "k8s-137 [$SECONDS s]: $*" >&2; }

tests/e2e/cluster/build-kubernetes.sh
./scripts/build-images --redis
cargo build --release -p framescale --locked

"$harness/node.sh" up
stop() {
  local pids=()
  for file in "$RUN137"/*.pid; do [ -f "$file" ] && pids+=("$(cat "$file")"); done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  # The API server shuts down gracefully (seconds); what is still there after 30 s is killed.
  for _ in $(seq 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 1
  done
  [ ${#pids[@]} -gt 0 ] && kill -9 "${pids[@]}" 2>/dev/null || true
  "$harness/node.sh" down
}
trap stop EXIT
"$harness/node.sh" load-image target/images/framescale.oci.tar
"$harness/node.sh" load-image target/images/framescale-redis.oci.tar
# The 1.20 components go; containerd and the node's network stay.
for c in proxy kubelet scheduler kcm apiserver etcd; do
  [ -f "$K8S_RUN/$c.pid" ] && kill "$(cat "$K8S_RUN/$c.pid")" 2>/dev/null || true
done
sleep 3
rm -rf "$RUN137" && mkdir -p "$RUN137/log"
start() { local name=$1; shift; "$@" >"$RUN137/log/$name.log" 2>&1 & echo $! >"$RUN137/$name.pid"; }
P="$K8S_RUN/pki"
node_ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
node_name=$(hostname | tr '[:upper:]' '[:lower:]')
start etcd "$B/etcd" --name node --data-dir "$RUN137/etcd" \
  --listen-client-urls http://127.0.0.1:22379 --advertise-client-urls http://127.0.0.1:22379 \
  --listen-peer-urls http://127.0.0.1:22380 --initial-advertise-peer-urls http://127.0.0.1:22380 \
  --initial-cluster node=http://127.0.0.1:22380
for _ in $(seq 60); do curl -sf http://127.0.0.1:22379/health >/dev/null && break; sleep 0.5; done
start apiserver "$B/kube-apiserver" --bind-address=0.0.0.0 --advertise-address="$node_ip" --secure-port=26443 \
  --etcd-servers=http://127.0.0.1:22379 --service-cluster-ip-range=10.96.0.0/24 --cert-dir="$RUN137/certs" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
  --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --kubelet-client-certificate="$P/kubelet-client.crt" --kubelet-client-key="$P/kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key"
kubectl="$B/kubectl --kubeconfig $K8S_RUN/admin.kubeconfig"
for _ in $(seq 120); do $kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
K="$K8S_RUN/kcm.kubeconfig" S="$K8S_RUN/scheduler.kubeconfig"
start kcm "$B/kube-controller-manager" --kubeconfig="$K" --authentication-kubeconfig="$K" --authorization-kubeconfig="$K" \
  --bind-address=127.0.0.1 --secure-port=20257 --cert-dir="$RUN137/certs" --leader-elect=false --controllers='*' \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --service-cluster-ip-range=10.96.0.0/24 \
  --horizontal-pod-autoscaler-sync-period=5s --horizontal-pod-autoscaler-downscale-stabilization=20s
start scheduler "$B/kube-scheduler" --kubeconfig="$S" --authentication-kubeconfig="$S" --authorization-kubeconfig="$S" \
  --bind-address=127.0.0.1 --secure-port=20259 --leader-elect=false
sock=/run/k8s-node/containerd.sock
sed "s|^failSwapOn: false|failSwapOn: false\nfailCgroupV1: false\ncontainerRuntimeEndpoint: unix://$sock\nimageServiceEndpoint: unix://$sock|" \
  "$K8S_RUN/conf/kubelet.yaml" >"$RUN137/kubelet.yaml"
start kubelet "$B/kubelet" --config="$RUN137/kubelet.yaml" --kubeconfig="$K8S_RUN/kubelet.kubeconfig" \
  --root-dir=/opt/k8s-node/kubelet --cert-dir=/opt/k8s-node/kubelet/pki --hostname-override="$node_name" --node-ip="$node_ip"
start proxy "$B/kube-proxy" --config="$K8S_RUN/conf/proxy.yaml"
for _ in $(seq 120); do
  $kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
  sleep 1
done
say "$($kubectl get nodes --no-headers -o wide 2>&1 | head -1)"
if [ "${QUEUE_ONLY:-}" != 1 ]; then
  "$python" tests/e2e/e2e.py --kubeconfig "$K8S_RUN/admin.kubeconfig" --kubectl "$B/kubectl" \
    --image "localhost/framescale:$version" --pull-policy Never --check-owner --doctor target/release/framescale \
    --load-seconds 330 "${@:2}"
fi
"$python" tests/e2e/queue.py --kubeconfig "$K8S_RUN/admin.kubeconfig" --kubectl "$B/kubectl" \
  --image "localhost/framescale:$version" --redis-image localhost/framescale-redis:bookworm --pull-policy Never \
  --framescale target/release/framescale --no-cluster-dns
