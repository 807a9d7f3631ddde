#!/usr/bin/env python3
"""framescale on a real cluster, end to end: installs charts/framescale from this working tree
with Helm's own library (PyPI helm-python-sdk), waits for the APIServices to be Available and
the exporters, adapter and worker to be ready, reads the custom metrics through the aggregator,
drives load at the worker with `framescale loadgen` (a Job using the same image), asserts that
the HPA scales the worker up and, once the load stops, back down, and that no
FailedGetPodsMetric event persists; then uninstalls. Any cluster a kubeconfig reaches (kind,
k3d, a real one); it needs the images where the nodes find them (`--image`, `--pull-policy`).

    python3 tests/e2e/e2e.py --kubeconfig ~/.kube/config --image registry.example/framescale:0.1.0

For the repository's one-node 1.20 harness, tests/e2e/k8s-local.sh builds and loads the images
and runs this. Not part of the offline test command. Prints a timeline; exits non-zero when a
check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import helm_python as helm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "framescale")
START = time.time()


def say(text):
    print(f"[{time.time() - START:6.1f}s] {text}", flush=True)


class Cluster:
    def __init__(self, kubeconfig, kubectl):
        self.kubeconfig, self.kubectl_bin = kubeconfig, kubectl

    def kubectl(self, *args, check=True, input=None):
        result = subprocess.run([self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
                                capture_output=True, text=True, input=input)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def json(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json"))


def wait(what, seconds, probe, every=2.0):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            got = probe()
            if got:
                say(f"{what}: yes")
                return got
        except (RuntimeError, KeyError, ValueError, IndexError) as error:
            last = error
        time.sleep(every)
    raise SystemExit(f"FAIL: timed out after {seconds:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def install(config, chart, name, values, namespace, server_side):
    """Helm's install, with server-side apply only when asked: Kubernetes 1.20's aggregator
    panics on a server-side apply of an APIService ("FieldManager must be installed to run
    apply"), so client-side apply, which every version takes, is the default. helm-python-sdk's
    wrapper has no argument for it yet; its C ABI has (`server_side_apply`)."""
    from helm_python import _native
    options = {"namespace": namespace, "create_namespace": True, "server_side_apply": server_side}
    payload = _native.call_string(
        "helm_install", config._raw(), config._context_arg(None), chart._raw(), None, name,
        json.dumps(values), json.dumps(options))
    return json.loads(payload)


FOREIGN_OWNER = ("monitoring", "prometheus-adapter")


def check_owner_refusal(cluster, config, chart, args, values):
    """The chart's owner check against a real API server: with v1beta1.custom.metrics.k8s.io
    held by another adapter's Service, the install must fail and name it. Then the stand-in is
    deleted, as a user taking over does. Only on a cluster where nobody holds the APIService:
    the stand-in is never Available, and is gone within a second."""
    name = "v1beta1.custom.metrics.k8s.io"
    stand_in = "framescale-e2e-stand-in"
    existing = cluster.kubectl("get", "apiservice", name, "--ignore-not-found", "-o", "json")
    if existing and stand_in in json.loads(existing)["metadata"].get("labels", {}):
        cluster.kubectl("delete", "apiservice", name)  # left by an interrupted run
    elif existing:
        raise SystemExit(f"--check-owner needs a cluster where nobody holds {name}")
    namespace, service = FOREIGN_OWNER
    foreign = {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name, "labels": {stand_in: "true"}},
        "spec": {"group": "custom.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "insecureSkipTLSVerify": True,
                 "service": {"namespace": namespace, "name": service, "port": 443}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(foreign))
    say(f"owner check: {name} now belongs to Service {namespace}/{service}")
    try:
        install(config, chart, args.release, values, args.namespace, args.server_side)
    except helm.HelmError as error:
        expected = f"already belongs to Service {namespace}/{service}"
        if expected not in str(error):
            raise SystemExit(f"FAIL: the install failed, but not on the owner check: {error}")
        say(f"owner check: the install is refused: {str(error)[:220]}")
    else:
        config.uninstall(args.release)
        raise SystemExit("FAIL: the chart installed over another adapter's APIService")
    # What docs/install.md tells a user who takes over: remove the other adapter's APIService
    # (Helm adopting it would leave its spec, pointing at the other Service, as it is).
    cluster.kubectl("delete", "apiservice", name)
    say(f"owner check: {name} deleted, as docs/install.md says before a takeover")
    return values


def available(cluster, name):
    conditions = cluster.json("get", "apiservice", name)["status"].get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def check_exporter_restart(cluster, namespace, values):
    """The exporter pod deleted (an upgrade, an eviction): the DaemonSet's new pod goes on from the
    checkpoint in the node's directory, so its frame counters go on instead of starting at 0."""
    port = values.get("exporter", {}).get("port", 9477)

    def ready_pod(not_named=None):
        pods = cluster.json("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=exporter")["items"]
        for pod in pods:
            statuses = pod["status"].get("containerStatuses") or []
            if (pod["metadata"]["name"] != not_named and not pod["metadata"].get("deletionTimestamp")
                    and statuses and all(c.get("ready") for c in statuses)):
                return pod["metadata"]["name"]
        return None

    def frames(pod):
        text = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics", check=False)
        counts = [float(line.rsplit(" ", 1)[1]) for line in (text or "").splitlines()
                  if line.startswith("framescale_frames_total{") and 'outcome="ok"' in line]
        return sum(counts) if counts else None

    old = wait("a ready exporter pod", 60, ready_pod)
    before = wait("the exporter's frame count", 30, lambda: frames(old))
    say(f"exporter {old}: {before:.0f} frames counted; deleting the pod")
    cluster.kubectl("-n", namespace, "delete", "pod", old, "--wait=true")
    new = wait("the exporter's new pod ready", 120, lambda: ready_pod(not_named=old))
    after = wait("the new pod's frame count", 60, lambda: frames(new))
    say(f"exporter {new}: {after:.0f} frames counted after the restart (from the checkpoint)")
    if after < before:
        return [f"the restarted exporter counts {after:.0f} frames, fewer than the {before:.0f} before: the checkpoint did not carry over"]
    return []


def check_doctor_and_adapter_outage(cluster, args, prefix, get_hpa):
    """`framescale doctor` on the healthy HPA, then, under load with the HPA above its minimum,
    every adapter pod gone for a minute: the APIService goes unavailable, the HPA keeps its
    replicas (no scale to the minimum), doctor fails naming the APIService, and all comes back
    when the adapter does."""
    failures = []
    env = {**os.environ, "KUBECONFIG": args.kubeconfig}

    def doctor():
        run = subprocess.run([args.doctor, "doctor", "--namespace", args.namespace, "--hpa", f"{prefix}-worker"],
                             capture_output=True, text=True, env=env)
        return run.returncode, [line for line in run.stdout.splitlines() if line.startswith("FAIL")], run.stdout

    code, failing, text = wait("doctor to find the HPA healthy", 60, lambda: (lambda r: r if r[0] == 0 else None)(doctor()))
    say(f"doctor on the healthy HPA: exit {code}")
    hpa = get_hpa()
    before, minimum = hpa["status"].get("desiredReplicas"), hpa["spec"].get("minReplicas", 1)
    if not before or before <= minimum:
        failures.append(f"the outage must start with the HPA above its minimum ({minimum}); it wants {before}")
    cluster.kubectl("-n", args.namespace, "scale", "deployment", f"{prefix}-adapter", "--replicas=0")
    say(f"adapter scaled to 0 (the HPA wants {before})")
    wait("the APIService to go unavailable", 90, lambda: not available(cluster, "v1beta2.custom.metrics.k8s.io"))
    code, failing, text = doctor()
    say(f"doctor without the adapter: exit {code}; {failing[0] if failing else text[-300:]}")
    if code == 0 or not any("APIService" in line or "ScalingActive" in line for line in failing):
        failures.append(f"doctor did not fail naming the APIService with the adapter gone: {text}")
    time.sleep(60)
    after = get_hpa()["status"].get("desiredReplicas")
    say(f"a minute without the adapter: the HPA wants {after}")
    if after != before:
        failures.append(f"the HPA changed its replicas from {before} to {after} with no metrics")
    cluster.kubectl("-n", args.namespace, "scale", "deployment", f"{prefix}-adapter", "--replicas=2")
    wait("the APIService Available again", 120, lambda: available(cluster, "v1beta2.custom.metrics.k8s.io"))
    code, _, _ = wait("doctor healthy again", 90, lambda: (lambda r: r if r[0] == 0 else None)(doctor()))
    say(f"adapter back: doctor exit {code}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config")))
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--namespace", default="framescale-e2e")
    parser.add_argument("--exporter-namespace", default=None,
                        help="the exporter's namespace, labelled Pod Security privileged (default: <namespace>-exporter); "
                             "the release's is labelled restricted")
    parser.add_argument("--release", default="e2e")
    parser.add_argument("--image", default="localhost/framescale:0.1.0", help="the framescale image, repository:tag")
    parser.add_argument("--pull-policy", default="IfNotPresent")
    parser.add_argument("--load-seconds", type=int, default=150)
    parser.add_argument("--keep", action="store_true", help="leave the release installed")
    parser.add_argument("--doctor", help="a framescale binary: run `framescale doctor` on the healthy HPA (exit 0), then, "
                                         "under load, with the adapter gone for a minute (the HPA holds above its minimum; "
                                         "doctor exits non-zero saying why); give --load-seconds 330 or more")
    parser.add_argument("--server-side", action="store_true", help="install with server-side apply (Kubernetes 1.22 and newer)")
    parser.add_argument("--check-owner", action="store_true",
                        help="first check that the install refuses an APIService another adapter holds, then take it over "
                             "(only where nobody holds v1beta1.custom.metrics.k8s.io)")
    args = parser.parse_args()
    args.exporter_namespace = args.exporter_namespace or f"{args.namespace}-exporter"
    cluster = Cluster(args.kubeconfig, args.kubectl)
    repository, tag = args.image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": args.pull_policy},
        "adapter": {"scrapeInterval": "2s"},
        "exporter": {"window": "30s", "namespace": args.exporter_namespace},
        "worker": {
            "slots": 1,
            "queue": 8,
            "hpa": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 30, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                },
            },
        },
    }
    # The per-HPA tolerance (KEP-4951, beta and on by default from 1.35): asked of clusters that
    # have it, and checked to be kept.
    server = json.loads(cluster.kubectl("version", "-o", "json"))["serverVersion"]
    minor = int("".join(c for c in server["minor"] if c.isdigit()))
    tolerance = minor >= 35
    if tolerance:
        values["worker"]["hpa"]["behavior"]["scaleDown"]["tolerance"] = "50m"
    say(f"Kubernetes {server['gitVersion']}" + ("; the HPA asks a scale-down tolerance of 5 %" if tolerance else ""))
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
    namespaces = (args.namespace, args.exporter_namespace)
    if any(cluster.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name") for ns in namespaces):
        # An interrupted run leaves its release, and with it APIServices whose backend is gone:
        # a namespace cannot finish terminating while an aggregated API is unavailable.
        say(f"an earlier run left namespace {args.namespace}: uninstalling its release {args.release}, deleting the namespace")
        try:
            config.uninstall(args.release)
        except helm.HelmError as error:
            say(f"no release to uninstall ({error})")
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
            cluster.kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=300s", check=False)
    # Pod Security as docs/install.md sets it: the release's namespace restricted, the exporter's
    # privileged (hostPath). Enforced from Kubernetes 1.23; accepted and ignored before.
    for ns, level in ((args.namespace, "restricted"), (args.exporter_namespace, "privileged")):
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": level,
                                                "pod-security.kubernetes.io/warn": level}}}))
        say(f"namespace {ns}: Pod Security {level}")
    chart = helm.Chart.load(CHART)
    failures = []
    if args.check_owner:
        values = check_owner_refusal(cluster, config, chart, args, values)
    say(f"installing {CHART} as {args.release} in {args.namespace} (image {args.image})")
    release = install(config, chart, args.release, values, args.namespace, args.server_side)
    say(f"installed: release {release.get('name', args.release)} revision {release.get('revision', '?')}")
    prefix = f"{args.release}-framescale"
    try:
        for version in ("v1beta2", "v1beta1"):
            wait(f"APIService {version}.custom.metrics.k8s.io Available", 240,
                 lambda v=version: available(cluster, f"{v}.custom.metrics.k8s.io"))
        wait("the exporters ready", 180, lambda: (lambda ds: ds["status"].get("numberReady", 0) >= max(1, ds["status"].get("desiredNumberScheduled", 1)))(
            cluster.json("-n", args.exporter_namespace, "get", "daemonset", f"{prefix}-exporter")))
        wait("the adapter ready", 180, lambda: cluster.json("-n", args.namespace, "get", "deployment", f"{prefix}-adapter")["status"].get("readyReplicas", 0) >= 1)
        wait("the worker ready", 180, lambda: cluster.json("-n", args.namespace, "get", "deployment", f"{prefix}-worker")["status"].get("readyReplicas", 0) >= 1)
        path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{args.namespace}/pods/%2A/render_scaling_score"
        service = cluster.json("-n", args.namespace, "get", "service", f"{prefix}-worker")["spec"]["clusterIP"]
        port = 8080
        say(f"load: a loadgen Job against http://{service}:{port} for {args.load_seconds}s")
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "framescale-e2e-load", "namespace": args.namespace},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                # Pod Security restricted, as the release's namespace enforces.
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "loadgen", "image": args.image, "imagePullPolicy": args.pull_policy,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "args": ["loadgen", "--url", f"http://{service}:{port}", "--profile", "constant:60",
                             "--duration", f"{args.load_seconds}s", "--width", "128", "--height", "128", "--samples", "16"],
                }],
            }}},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
        loaded = time.time()

        def values_served():
            body = json.loads(cluster.kubectl("get", "--raw", path))
            return [(i["describedObject"]["name"], i["value"]) for i in body["items"]] or None

        say(f"custom metrics through the aggregator: {wait('render_scaling_score served for the worker', 120, values_served)}")

        # The HPA in the newest version the cluster serves: on 1.20 `get hpa` answers
        # autoscaling/v1, which has no conditions or current metrics.
        v2 = "autoscaling/v2" in cluster.kubectl("api-versions").split()
        hpa_kind = f"horizontalpodautoscalers.{'v2' if v2 else 'v2beta2'}.autoscaling"

        def get_hpa():
            return cluster.json("-n", args.namespace, "get", hpa_kind, f"{prefix}-worker")

        selector = "labelSelector=app.kubernetes.io%2Fcomponent%3Dworker"
        metrics_base = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{args.namespace}/pods/%2A"

        def replicas():
            status = get_hpa()["status"]
            shown = {}
            for metric in ("render_frame_latency_ms", "render_frame_duration_ms", "nvidia_gpu_duty_cycle", "render_scaling_score"):
                body = json.loads(cluster.kubectl("get", "--raw", f"{metrics_base}/{metric}?{selector}", check=False) or "{}")
                for item in body.get("items", []):
                    shown.setdefault(item["describedObject"]["name"].rsplit("-", 1)[-1], {})[metric] = item["value"]
            pods = "; ".join(f"{pod}: latency P95 {m.get('render_frame_latency_ms', '-')} ms, render P95 {m.get('render_frame_duration_ms', '-')} ms, duty {m.get('nvidia_gpu_duty_cycle', '-')} %, "
                             f"score {m.get('render_scaling_score', '-')}" for pod, m in sorted(shown.items())) or "no values"
            seen = [c.get("pods", {}).get("current", {}).get("averageValue") for c in status.get("currentMetrics") or []]
            phases = {}
            for pod in cluster.json("-n", args.namespace, "get", "pods", "-l", "app.kubernetes.io/component=worker")["items"]:
                phase = pod["status"].get("phase", "?")
                phases[phase] = phases.get(phase, 0) + 1
            say(f"replicas {status.get('currentReplicas')} -> {status.get('desiredReplicas')} (pods {phases}), HPA sees {seen}; {pods}")
            return status.get("currentReplicas", 0), status.get("desiredReplicas", 0)

        if tolerance:
            kept = get_hpa()["spec"]["behavior"]["scaleDown"].get("tolerance")
            say(f"the HPA's scaleDown.tolerance as the API server keeps it: {kept}")
            if kept != "50m":
                failures.append(f"the API server did not keep the HPA's tolerance: {kept}")
        up = wait("the HPA to scale the worker up", args.load_seconds, lambda: replicas()[1] > 1 and replicas(), every=3)
        say(f"scaled up to {up} (current, desired), {time.time() - loaded:.0f}s after the load started")
        if args.doctor:
            # Under load, above the minimum: an outage must not take the workers down with it.
            failures.extend(check_doctor_and_adapter_outage(cluster, args, prefix, get_hpa))
            say(f"the outage ended {time.time() - loaded:.0f}s into the load")
        remaining = args.load_seconds - (time.time() - loaded)
        if remaining > 0:
            time.sleep(remaining)
        say("load over")
        down = wait("the HPA to scale the worker back down to 1", 300, lambda: replicas() == (1, 1) and replicas(), every=5)
        say(f"scaled down to {down}")
        events = cluster.json("-n", args.namespace, "get", "events", "--field-selector",
                              f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={prefix}-worker")["items"]
        reasons = [(e["reason"], e.get("count", 1), e.get("lastTimestamp") or e.get("eventTime"), e["message"][:160]) for e in events]
        for reason in reasons:
            say(f"HPA event: {reason}")
        hpa = get_hpa()
        conditions = {c["type"]: (c["status"], c.get("reason")) for c in hpa["status"].get("conditions", [])}
        say(f"HPA conditions: {conditions}")
        if conditions.get("ScalingActive", ("", ""))[0] != "True":
            failures.append(f"ScalingActive is {conditions.get('ScalingActive')}")
        # FailedGetPodsMetric while a new pod has no value yet is normal; one that persists is not.
        if conditions.get("ScalingActive", ("", ""))[1] == "FailedGetPodsMetric":
            failures.append("FailedGetPodsMetric persists")
        rescaled = [r for r in reasons if r[0] == "SuccessfulRescale"]
        if len(rescaled) < 2:
            failures.append(f"expected a rescale up and one down, saw {rescaled}")
        failures.extend(check_exporter_restart(cluster, args.exporter_namespace, values))
    finally:
        if not args.keep:
            cluster.kubectl("-n", args.namespace, "delete", "job", "framescale-e2e-load", "--ignore-not-found", check=False)
            config.uninstall(args.release)
            say("uninstalled")
            for version in ("v1beta2", "v1beta1"):
                gone = cluster.kubectl("get", "apiservice", f"{version}.custom.metrics.k8s.io", check=False)
                if gone:
                    failures.append(f"APIService {version} left behind")
            for ns in namespaces:
                cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False)
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        sys.exit(1)
    say("PASS: installed, Available, scaled up under load and back down" + ("; left installed (--keep)" if args.keep else ", uninstalled"))


if __name__ == "__main__":
    main()
