#!/usr/bin/env bash
# tests/e2e/e2e.py on a one-node Kubernetes 1.20 run as plain processes by a k8s-local harness
# (a test aid kept beside the project, not part of it): builds the images here, starts the node,
# loads the image into its containerd (no registry: imagePullPolicy Never), runs the e2e, and
# stops the node whatever happens. The node is new, so the owner check runs too (--check-owner).
#
#   tests/e2e/k8s-local.sh /path/to/k8s-local      # the harness directory (build.sh, node.sh)
#
# Needs root, the harness built (its build.sh), and the test venv (./scripts/test makes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
harness=${1:?give the k8s-local harness directory (with node.sh)}
harness=$(cd "$harness" && pwd)
export K8S_RUN=${K8S_RUN:-/tmp/framescale-k8s-run}
python=${FRAMESCALE_TEST_PYTHON:-target/test-python/bin/python}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

./scripts/build-images
"$harness/node.sh" up
trap '"$harness/node.sh" down' EXIT
"$harness/node.sh" load-image target/images/framescale.oci.tar
export PATH="${K8S_BIN:-/opt/k8s/bin}:$PATH"
"$python" tests/e2e/e2e.py --kubeconfig "$K8S_RUN/admin.kubeconfig" --kubectl "$(command -v kubectl)" \
  --image "localhost/framescale:$version" --pull-policy Never --check-owner "${@:2}"
