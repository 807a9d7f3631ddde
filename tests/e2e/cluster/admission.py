#!/usr/bin/env python3
"""The chart against a real API server's admission, as docs/install.md installs it: the release's
namespace enforcing Pod Security `restricted`, the exporter's `privileged`. Every pod the
controllers create must be admitted (none refused); the exporter's DaemonSet put in the
restricted namespace instead must be refused ("violates PodSecurity"), so enforcement is on;
and `framescale doctor` must find the HPA (autoscaling/v2) and fail, naming why, while no adapter
pod runs. For tests/e2e/cluster/control-plane.sh (no kubelet: pods are admitted and stay Pending).

    target/test-python/bin/python tests/e2e/cluster/admission.py --kubeconfig /tmp/framescale-cp/admin.kubeconfig \\
        --kubectl ~/.cache/framescale-cluster/bin/kubectl
"""
import argparse
import json
import os
import subprocess
import sys
import time

import helm_python as helm
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CHART = os.path.join(ROOT, "charts", "framescale")
NAMESPACE, EXPORTER_NAMESPACE, RELEASE = "framescale", "framescale-exporter", "fs"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--framescale", default=os.path.join(ROOT, "target", "release", "framescale"))
    args = parser.parse_args()
    started = time.time()
    failures = []

    def say(message):
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    def kubectl(*argv, input=None, check=True):
        result = subprocess.run([args.kubectl, "--kubeconfig", args.kubeconfig, *argv], input=input,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout + result.stderr

    say(kubectl("version").strip().splitlines()[-1])
    for namespace, level in ((NAMESPACE, "restricted"), (EXPORTER_NAMESPACE, "privileged")):
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": {"pod-security.kubernetes.io/enforce": level}}}))
        say(f"namespace {namespace}: enforce {level}")
    values = {"exporter": {"namespace": EXPORTER_NAMESPACE}}
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=NAMESPACE)
    chart = helm.Chart.load(CHART)
    config.install(chart, RELEASE, values, namespace=NAMESPACE)
    say("installed")

    expected = {(EXPORTER_NAMESPACE, "exporter"): 1, (NAMESPACE, "adapter"): 2, (NAMESPACE, "worker"): 1}
    deadline = time.time() + 60
    while True:
        counts = {}
        for namespace, component in expected:
            pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json"))
            counts[(namespace, component)] = len(pods["items"])
        if counts == expected or time.time() > deadline:
            break
        time.sleep(1)
    say(f"pods admitted: {counts}")
    if counts != expected:
        failures.append(f"pods admitted {counts}, expected {expected}")
    for namespace in (NAMESPACE, EXPORTER_NAMESPACE):
        events = json.loads(kubectl("-n", namespace, "get", "events", "-o", "json"))["items"]
        refused = [e["message"] for e in events if e.get("reason") == "FailedCreate"]
        if refused:
            failures.append(f"{namespace}: pods refused: {refused[:2]}")
    # No framescale process runs here (no kubelet): deprecated API use is not ours to read yet.
    metrics = kubectl("get", "--raw", "/metrics", check=False)
    deprecated = [line for line in metrics.splitlines() if line.startswith("apiserver_requested_deprecated_apis{")]
    say(f"deprecated APIs requested by anyone so far (the control plane's own controllers included): {deprecated or 'none'}")

    # The exporter's DaemonSet in the restricted namespace: Pod Security must refuse its pods.
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    daemonset = next(d for path, text in rendered.items() if path.endswith(".yaml")
                     for d in yaml.safe_load_all(text) if d and d.get("kind") == "DaemonSet")
    daemonset["metadata"]["name"] = "misplaced-exporter"
    daemonset["metadata"]["namespace"] = NAMESPACE
    daemonset["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "misplaced"
    daemonset["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "misplaced"
    daemonset["spec"]["template"]["spec"]["serviceAccountName"] = "default"  # its own is in the other namespace
    warning = kubectl("apply", "-f", "-", input=json.dumps(daemonset))
    deadline = time.time() + 30
    refused = []
    while not refused and time.time() < deadline:
        events = json.loads(kubectl("-n", NAMESPACE, "get", "events", "-o", "json"))["items"]
        refused = [e["message"] for e in events if e.get("reason") == "FailedCreate" and "misplaced" in e["involvedObject"]["name"]]
        time.sleep(1)
    say(f"the exporter in the restricted namespace: {refused[0][:200] if refused else 'admitted!'}")
    if not refused or "violates PodSecurity" not in refused[0]:
        failures.append("the exporter's pods were not refused in a restricted namespace: enforcement is not on")
    if "would violate PodSecurity" not in warning:
        say(f"(no apply-time warning: {warning.strip()[:160]})")
    kubectl("-n", NAMESPACE, "delete", "daemonset", "misplaced-exporter")

    doctor = subprocess.run([args.framescale, "doctor", "--namespace", NAMESPACE, "--hpa", f"{RELEASE}-framescale-worker"],
                            capture_output=True, text=True, env={**os.environ, "KUBECONFIG": args.kubeconfig})
    hpa_line = next((line for line in doctor.stdout.splitlines() if "HPA " in line and "/" in line), "")
    say(f"doctor: exit {doctor.returncode}; {hpa_line.strip()}")
    failing = [line.strip() for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    say(f"doctor's first FAIL: {failing[0] if failing else '-'}")
    if "autoscaling/v2 " not in hpa_line:
        failures.append(f"doctor did not read the HPA through autoscaling/v2: {doctor.stdout}{doctor.stderr}")
    if doctor.returncode == 0 or not failing:
        failures.append("doctor passed with no adapter running")

    config.uninstall(RELEASE)
    for namespace in (NAMESPACE, EXPORTER_NAMESPACE):
        kubectl("delete", "namespace", namespace, "--wait=false")
    say("uninstalled")
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        sys.exit(1)
    say("PASS: every pod admitted under Pod Security as documented, a misplaced exporter refused, doctor says why")


if __name__ == "__main__":
    main()
