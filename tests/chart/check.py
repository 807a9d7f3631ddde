#!/usr/bin/env python3
"""Checks charts/framescale offline with real tools, for the default values and the
combinations that matter: renders it with Helm's own library (PyPI helm-python-sdk), validates
every manifest with kubernetes-validate --strict for the oldest and newest Kubernetes it
ships schemas for (and 1.25 for the autoscaling/v2beta2 flavour of 1.20-1.22 clusters), parses
every quantity with the Kubernetes Python client, and asserts what matters: the APIServices'
caBundle verifies the serving certificate, whose names are the adapter Service's; no
insecureSkipTLSVerify; the HPA names metrics the adapter serves (asked of a running adapter);
every flag the chart passes exists in `framescale <role> --help`; a typo in values is refused;
every pod meets the Pod Security level its namespace can enforce (restricted for the adapter and
the worker; the exporter's hostPath needs privileged), judged by Kubernetes' own admission
library (tests/psa, k8s.io/pod-security-admission, built with Go).

    python3 tests/chart/check.py --framescale target/debug/framescale

Run by cli/tests/chart.rs (the test command) with the test virtual environment's python.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes.utils.quantity import parse_quantity

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "framescale")
NAMESPACE = "framescale"
# Kinds Kubernetes does not define: checked by hand below, not against its schemas.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "Issuer", "Certificate", "PrometheusRule"}
DASHBOARDS = os.path.join(CHART, "files", "dashboards")
RULES = os.path.join(CHART, "files", "alerts", "framescale.rules.yml")

EXAMPLES = os.path.join(ROOT, "docs", "examples")
EXPORTER_NAMESPACE = "framescale-exporter"


def example(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


DCGM = {"metrics": {"gpu": {"series": "DCGM_FI_PROF_SM_ACTIVE", "scale": 100, "window": "1s"}}}

COMBINATIONS = {
    "defaults": {},
    "prometheus backend with CA, bearer token and client certificate": {
        "adapter": {"backend": "prometheus"},
        "prometheus": {"url": "https://prometheus.monitoring.svc:9090", "caSecret": {"name": "prometheus-ca"},
                       "bearerTokenSecret": {"name": "prometheus-token"}, "clientCertSecret": "prometheus-client"},
    },
    "cert-manager": {"adapter": {"tls": {"source": "cert-manager"}}},
    "cert-manager with an existing issuer": {"adapter": {"tls": {"source": "cert-manager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}},
    "worker off": {"worker": {"enabled": False}},
    "DCGM as the GPU source, through Prometheus": {
        "adapter": {"backend": "prometheus", "metricsConfig": DCGM},
        "prometheus": {"url": "http://prometheus.monitoring.svc:9090"},
        "exporter": {"deviceSource": "cpu"},
    },
    "the two raw metrics": {"worker": {"hpa": {"metrics": "raw"}}},
    "Prometheus Operator monitors and rules, JSON logs, dashboards in Grafana's namespace": {
        "serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
        "logFormat": "json", "dashboards": {"namespace": "monitoring"}},
    "Kubernetes 1.20 (autoscaling/v2beta2)": {"worker": {"hpa": {"apiVersion": "autoscaling/v2beta2"}}},
    "the production example (docs/examples/values-production.yaml)": example("values-production.yaml"),
    "the GPU pool example (docs/examples/values-gpu-pool.yaml), pod monitors": {
        **example("values-gpu-pool.yaml"), "podMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "push on, NetworkPolicies, IPv6, an image by digest, labels and spread": {
        "exporter": {"push": {"enabled": True, "maxSeries": 500}, "podLabels": {"team": "render"},
                     "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}]},
        "networkPolicy": {"enabled": True, "pushFrom": [{"podSelector": {"matchLabels": {"app": "renderer"}}}],
                          "controlPlaneCIDRs": ["10.0.0.0/24"]},
        "listenAddress": "::",
        "image": {"digest": "sha256:" + "ab" * 32},
        "adapter": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                   "whenUnsatisfiable": "ScheduleAnyway",
                                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "adapter"}}}]},
    },
    "queue mode, the bundled Redis, scale to zero, NetworkPolicies": {
        "queue": {"enabled": True, "scaleToZero": True, "backlogPerReplica": "20", "bundled": {"enabled": True}},
        "networkPolicy": {"enabled": True, "queueFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "artists"}}}]},
    },
    "queue mode keeping worker.hpa.behavior's scale-down window (scaleDownWindowSeconds: null)": {
        "queue": {"enabled": True, "url": "redis://redis.render.svc:6379/0", "scaleDownWindowSeconds": None},
        "worker": {"hpa": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}}}},
    "queue mode on your own Redis, its URL in a Secret, the score beside the backlog": {
        "queue": {"enabled": True, "existingSecret": "render-queue", "withScore": True}},
    "an existing TLS Secret (GitOps)": {"adapter": {"tls": {"source": "existingSecret", "existingSecret": "adapter-tls",
                                                            "caBundle": base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()}}},
}

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"  FAIL {what}")


def documents(rendered):
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield path, doc


def quantities(node, where=""):
    """Every (where, value) that Kubernetes reads as a quantity."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if key == "env":
                continue
            if key in ("requests", "limits") and isinstance(value, dict):
                for name, q in value.items():
                    yield f"{here}.{name}", q
            elif key in ("averageValue", "value") and isinstance(value, str):
                yield here, value
            else:
                yield from quantities(value, here)
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from quantities(item, f"{where}[{n}]")


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)


def served_metrics(framescale, metrics_config):
    """The metric names a running adapter serves with `metrics_config`."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "metrics.yaml")
        with open(config, "w") as f:
            yaml.safe_dump(metrics_config or {}, f)
        adapter = subprocess.Popen(
            [framescale, "adapter", "--self-signed", "--insecure-disable-auth", "--listen", f"127.0.0.1:{ports[0]}",
             "--admin-listen", f"127.0.0.1:{ports[1]}", "--exporter", "http://127.0.0.1:9/metrics", "--metrics-config", config],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"https://127.0.0.1:{ports[0]}/apis/custom.metrics.k8s.io/v1beta2"
            for _ in range(100):
                try:
                    body = urllib.request.urlopen(url, context=ssl._create_unverified_context()).read()
                    return {r["name"].split("/", 1)[1] for r in json.loads(body)["resources"] if r["name"].startswith("pods/")}
                except OSError:
                    time.sleep(0.1)
            raise RuntimeError("the adapter did not answer")
        finally:
            adapter.terminate()
            adapter.wait()


def flags_of(framescale, role):
    text = subprocess.run([framescale, role, "--help"], capture_output=True, text=True, check=True).stdout
    return {word.split("=")[0].rstrip(",") for word in text.split() if word.startswith("--")}


def check_combination(chart, name, values, framescale):
    print(f"== {name}")
    chart.validate_schema(values)
    rendered = chart.render(values, name="fs", namespace=NAMESPACE, is_install=True)
    docs = list(documents(rendered))
    kinds = [d["kind"] for _, d in docs]
    versions = ["1.25.0"] if "autoscaling/v2beta2" in json.dumps(values) else ["1.28.0", kubernetes_validate.latest_version()]
    for path, doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                check(False, f"{name}: {doc['kind']} {doc['metadata']['name']} ({path}) is not a valid {version} object: {error.message}")
        for where, q in quantities(doc):
            try:
                parse_quantity(q)
            except ValueError as error:
                check(False, f"{name}: {doc['kind']} {where} = {q!r} is not a quantity: {error}")
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    apiservices = by_kind.get("APIService", [])
    check(sorted(a["metadata"]["name"] for a in apiservices) == ["v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"],
          f"{name}: both APIServices")
    adapter_service = next(s for s in by_kind["Service"] if s["metadata"]["name"].endswith("-adapter"))
    for api in apiservices:
        spec = api["spec"]
        check(not spec.get("insecureSkipTLSVerify"), f"{name}: {api['metadata']['name']} never skips TLS verification")
        check(spec["service"] == {"name": adapter_service["metadata"]["name"], "namespace": NAMESPACE, "port": 443},
              f"{name}: {api['metadata']['name']} points at the adapter Service's port 443")
    tls_source = values.get("adapter", {}).get("tls", {}).get("source", "helm")
    cert_manager = tls_source == "cert-manager"
    names = {adapter_service["metadata"]["name"], f"{adapter_service['metadata']['name']}.{NAMESPACE}.svc"}
    if cert_manager:
        for api in apiservices:
            check(api["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/fs-framescale-adapter",
                  f"{name}: cainjector fills {api['metadata']['name']}'s caBundle")
        serving = next(c for c in by_kind["Certificate"] if not c["spec"].get("isCA"))
        check(names <= set(serving["spec"]["dnsNames"]), f"{name}: the Certificate names the Service")
    elif tls_source == "existingSecret":
        tls = values["adapter"]["tls"]
        check(not any(s["metadata"]["name"].endswith("-adapter-tls") for s in by_kind.get("Secret", [])),
              f"{name}: no Secret minted beside the existing one")
        adapter = next(d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-adapter"))
        volumes = {v["name"]: v for v in adapter["spec"]["template"]["spec"]["volumes"]}
        check(volumes["tls"]["secret"]["secretName"] == tls["existingSecret"], f"{name}: the adapter mounts the existing Secret")
        for api in apiservices:
            check(api["spec"].get("caBundle") == tls["caBundle"], f"{name}: {api['metadata']['name']} carries the given caBundle")
    else:
        secret = next(s for s in by_kind["Secret"] if s["metadata"]["name"].endswith("-adapter-tls"))
        with tempfile.TemporaryDirectory() as tmp:
            files = {}
            for key in ("tls.crt", "ca.crt"):
                files[key] = os.path.join(tmp, key)
                with open(files[key], "wb") as f:
                    f.write(base64.b64decode(secret["data"][key]))
            for api in apiservices:
                check(base64.b64decode(api["spec"]["caBundle"]) == base64.b64decode(secret["data"]["ca.crt"]),
                      f"{name}: {api['metadata']['name']}'s caBundle is the CA of the serving certificate")
            verified = openssl("verify", "-CAfile", files["ca.crt"], files["tls.crt"])
            check(verified.returncode == 0, f"{name}: the CA signs the serving certificate: {verified.stdout}{verified.stderr}")
            san = openssl("x509", "-in", files["tls.crt"], "-noout", "-ext", "subjectAltName").stdout
            for dns in names:
                check(f"DNS:{dns}" in san, f"{name}: the serving certificate names {dns}: {san}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        config = values.get("adapter", {}).get("metricsConfig", {})
        served = served_metrics(framescale, config)
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Object":
                continue
            check(metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in served,
                  f"{name}: the HPA's metric {metric['pods']['metric']['name']} is one the adapter serves ({sorted(served)})")
        check_queue_mode(name, values, by_kind, hpa)
        check(hpa["apiVersion"] == ("autoscaling/v2beta2" if "v2beta2" in json.dumps(values) else "autoscaling/v2"),
              f"{name}: HPA apiVersion {hpa['apiVersion']}")
    roles = {"adapter": flags_of(framescale, "adapter"), "exporter": flags_of(framescale, "exporter"), "worker": flags_of(framescale, "worker")}
    for kind in ("Deployment", "DaemonSet"):
        for workload in by_kind.get(kind, []):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                args = container["args"]
                role = args[0]
                if container["name"] == "redis":
                    continue
                for arg in args[1:]:
                    flag = arg.split("=")[0]
                    check(flag in roles[role], f"{name}: {workload['metadata']['name']} passes {flag}, which `framescale {role}` does not have")
    if "DaemonSet" in by_kind:
        ds = by_kind["DaemonSet"][0]["spec"]["template"]["spec"]
        mounts = ds["containers"][0]["volumeMounts"]
        writable = [m for m in mounts if not m.get("readOnly")]
        check(all(m["name"] == "state" for m in writable), f"{name}: every exporter mount but its checkpoint's is read-only")
        state_flags = [a for a in ds["containers"][0]["args"] if a.startswith("--state-dir=")]
        check([f"--state-dir={m['mountPath']}" for m in writable] == state_flags,
              f"{name}: the exporter's --state-dir is its one writable mount")
        check(ds["containers"][0]["securityContext"]["capabilities"]["drop"] == ["ALL"], f"{name}: the exporter drops every capability")
    check_dashboards_and_rules(name, values, by_kind)
    check_production_review(name, values, by_kind)
    print(f"  {len(docs)} objects: {', '.join(sorted(set(kinds)))}")


def check_queue_mode(name, values, by_kind, hpa):
    """Queue mode: the workers and the adapter get the queue, the HPA the backlog as an Object
    metric on the worker Deployment (minReplicas 0 only when asked), the bundled Redis keeps its
    append-only file and only the workers, the adapter and queueFrom reach it."""
    queue = values.get("queue", {})
    enabled = queue.get("enabled", False)
    worker = next(d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-worker"))
    adapter = next(d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-adapter"))
    objects = [m for m in hpa["spec"]["metrics"] if m["type"] == "Object"]
    check(len(objects) == (1 if enabled else 0), f"{name}: the backlog metric only in queue mode")
    for metric in objects:
        check(metric["object"]["metric"]["name"] == "render_backlog_frames"
              and metric["object"]["describedObject"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker["metadata"]["name"]}
              and metric["object"]["target"] == {"type": "AverageValue", "averageValue": queue.get("backlogPerReplica", "10")},
              f"{name}: the HPA reads render_backlog_frames on the worker Deployment per replica: {metric}")
    pods_metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    alone = enabled and not queue.get("withScore", False)
    check((not pods_metrics) == alone, f"{name}: the Pods metrics beside the backlog unless queue.withScore is false")
    expected_min = 0 if enabled and queue.get("scaleToZero") else values.get("worker", {}).get("hpa", {}).get("minReplicas", 1)
    check(hpa["spec"]["minReplicas"] == expected_min, f"{name}: minReplicas {hpa['spec']['minReplicas']}, expected {expected_min}")
    window = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds")
    written = values.get("worker", {}).get("hpa", {}).get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
    expected_window = queue.get("scaleDownWindowSeconds", 60) if enabled else written
    expected_window = written if expected_window is None else expected_window
    check(window == expected_window, f"{name}: scale-down window {window} s, expected {expected_window} s")
    if enabled:
        policies = hpa["spec"]["behavior"]["scaleDown"].get("policies")
        check(policies == [{"type": "Percent", "value": 50, "periodSeconds": 60}] or "behavior" in values.get("worker", {}).get("hpa", {}),
              f"{name}: the rest of worker.hpa.behavior's scaleDown kept: {policies}")
    for workload in (worker, adapter):
        container = workload["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        check(("FRAMESCALE_QUEUE_URL" in env) == enabled, f"{name}: {workload['metadata']['name']} gets the queue's URL only in queue mode")
        if enabled and queue.get("existingSecret"):
            check(env["FRAMESCALE_QUEUE_URL"].get("valueFrom", {}).get("secretKeyRef", {}).get("name") == queue["existingSecret"],
                  f"{name}: the URL comes from the Secret, never written in the manifest")
    adapter_args = adapter["spec"]["template"]["spec"]["containers"][0]["args"]
    check(any(a.startswith("--backlog-deployment=") and a.endswith(worker["metadata"]["name"]) for a in adapter_args) == enabled,
          f"{name}: the adapter serves the worker Deployment's backlog only in queue mode")
    bundled = enabled and queue.get("bundled", {}).get("enabled", False)
    redis = [d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-queue")]
    check(len(redis) == (1 if bundled else 0), f"{name}: the bundled Redis only when asked for")
    for deployment in redis:
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        check(args[args.index("--appendonly") + 1] == "yes", f"{name}: the bundled Redis keeps its append-only file")
        check(deployment["spec"]["strategy"]["type"] == "Recreate", f"{name}: one Redis at a time on the file")
        url = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}["FRAMESCALE_QUEUE_URL"]["value"]
        check(url == f"redis://{deployment['metadata']['name']}.{NAMESPACE}.svc:6379/0", f"{name}: the workers reach the bundled Redis: {url}")
        if values.get("networkPolicy", {}).get("enabled"):
            policy = next(p for p in by_kind["NetworkPolicy"] if p["metadata"]["name"] == deployment["metadata"]["name"])
            peers = policy["spec"]["ingress"][0]["from"]
            components = [p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for p in peers]
            check(components[:2] == ["worker", "adapter"] and peers[2:] == values["networkPolicy"].get("queueFrom", []),
                  f"{name}: only the workers, the adapter and queueFrom reach the queue: {peers}")


def pod_templates(by_kind):
    for kind in ("Deployment", "DaemonSet"):
        for workload in by_kind.get(kind, []):
            yield workload, workload["spec"]["template"]


def go():
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if not found:
        raise RuntimeError("Go is needed to build tests/psa (Kubernetes' Pod Security admission library)")
    return found


PSA = []


def psa(level, templates):
    """What Pod Security `level` (latest) forbids of each pod template, by Kubernetes' own library."""
    if not PSA:
        binary = os.path.join(ROOT, "target", "psa-check")
        subprocess.run([go(), "build", "-o", binary, "."], cwd=os.path.join(ROOT, "tests", "psa"), check=True)
        PSA.append(binary)
    pods = [{"name": name, "metadata": t.get("metadata", {}), "spec": t["spec"]} for name, t in templates]
    answer = subprocess.run([PSA[0]], input=json.dumps({"level": level, "version": "latest", "pods": pods}),
                            capture_output=True, text=True, check=True)
    return {v["name"]: v["forbidden"] for v in json.loads(answer.stdout)}


def check_production_review(name, values, by_kind):
    """What an SRE's review of the chart asked (issue 20): Pod Security, NVML under the GPU
    Operator, hostPID, priorities, the PDB, monitors, the exporter's namespace, push and
    NetworkPolicies."""
    exporter_values = values.get("exporter", {})
    exporter_namespace = exporter_values.get("namespace") or NAMESPACE
    templates = list(pod_templates(by_kind))
    for workload, template in templates:
        where = f"{name}: {workload['metadata']['name']}"
        spec = template["spec"]
        check(spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{where} runs with the RuntimeDefault seccomp profile")
        check(spec.get("nodeSelector", {}).get("kubernetes.io/os") == "linux", f"{where} is scheduled on Linux nodes only")
    restricted = psa("restricted", [(w["metadata"]["name"], t) for w, t in templates if w["kind"] == "Deployment"])
    for pod, forbidden in restricted.items():
        check(not forbidden, f"{name}: {pod} meets Pod Security restricted: {forbidden}")
    for workload in by_kind.get("DaemonSet", []):
        ds = workload["spec"]["template"]["spec"]
        container = ds["containers"][0]
        check(workload["metadata"]["namespace"] == exporter_namespace, f"{name}: the exporter runs in {exporter_namespace}")
        baseline = psa("baseline", [("exporter", workload["spec"]["template"])])["exporter"]
        check(any("hostPath" in f for f in baseline),
              f"{name}: the exporter needs privileged (hostPath), as docs/install.md says: {baseline}")
        check(ds.get("hostPID") is bool(exporter_values.get("hostPID", False)), f"{name}: hostPID only when asked for")
        check(ds.get("priorityClassName") == "system-node-critical", f"{name}: the exporter is node-critical")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if exporter_values.get("runtimeClassName"):
            check(ds.get("runtimeClassName") == exporter_values["runtimeClassName"], f"{name}: the NVIDIA runtime class")
            check(env.get("NVIDIA_VISIBLE_DEVICES") == "all" and env.get("NVIDIA_DRIVER_CAPABILITIES") == "utility",
                  f"{name}: the NVIDIA runtime is asked for NVML ({env})")
        else:
            check("NVIDIA_VISIBLE_DEVICES" not in env, f"{name}: no NVIDIA variables without its runtime")
        for extra in exporter_values.get("extraEnv", []):
            check(env.get(extra["name"]) == extra.get("value"), f"{name}: extraEnv {extra['name']} is set")
        push = exporter_values.get("push", {})
        check(("--push" in container["args"]) == bool(push.get("enabled")), f"{name}: --push only with exporter.push.enabled")
        if push.get("enabled"):
            check(f"--max-series={push.get('maxSeries', 10000)}" in container["args"], f"{name}: the push series cap")
        if values.get("listenAddress") == "::":
            check("--listen=[::]:9477" in container["args"], f"{name}: IPv6 listen address")
        if values.get("image", {}).get("digest"):
            check(container["image"].endswith("@" + values["image"]["digest"]), f"{name}: the image by digest")
        for key, value in exporter_values.get("podLabels", {}).items():
            check(workload["spec"]["template"]["metadata"]["labels"].get(key) == value, f"{name}: pod label {key}")
    adapter = next(d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-adapter"))
    check(adapter["spec"]["template"]["spec"].get("priorityClassName") == "system-cluster-critical",
          f"{name}: the adapter is cluster-critical")
    if values.get("adapter", {}).get("backend", "direct") == "direct":
        check(f"--exporter-service={exporter_namespace}/fs-framescale-exporter" in adapter["spec"]["template"]["spec"]["containers"][0]["args"],
              f"{name}: the adapter watches the exporter Service in {exporter_namespace}")
        role = next(r for r in by_kind["Role"] if r["metadata"]["name"].endswith("-exporters"))
        check(role["metadata"]["namespace"] == exporter_namespace, f"{name}: the EndpointSlice Role is in {exporter_namespace}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        check("minAvailable" not in pdb["spec"] and pdb["spec"].get("maxUnavailable", 0) != 0,
              f"{name}: the PDB lets one replica go, however many there are ({pdb['spec']})")
    if values.get("adapter", {}).get("topologySpreadConstraints"):
        check(adapter["spec"]["template"]["spec"].get("topologySpreadConstraints") == values["adapter"]["topologySpreadConstraints"],
              f"{name}: topology spread constraints")
    monitors = by_kind.get("ServiceMonitor", []) + by_kind.get("PodMonitor", [])
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PodMonitor", "podMonitor")):
        for monitor in by_kind.get(kind, []):
            for label, value in values.get(key, {}).get("labels", {}).items():
                check(monitor["metadata"]["labels"].get(label) == value, f"{name}: {kind} {monitor['metadata']['name']} has {label}={value}")
    if monitors:
        # The jobs the alerts match: FramescaleAdapterDown needs an adapter job.
        jobs = [m["metadata"]["name"] for m in by_kind.get("PodMonitor", [])] + \
               [s["metadata"]["name"] for s in by_kind["Service"] if s["metadata"]["labels"].get("app.kubernetes.io/component") in ("exporter", "adapter")] \
               if by_kind.get("ServiceMonitor") else [m["metadata"]["name"] for m in by_kind.get("PodMonitor", [])]
        check(any("framescale" in j and "adapter" in j for j in jobs) and any("framescale" in j and "exporter" in j for j in jobs),
              f"{name}: both the adapter and the exporters are scraped, under jobs the alerts match ({jobs})")
        for monitor in by_kind.get("ServiceMonitor", []):
            if exporter_namespace != NAMESPACE:
                check(set(monitor["spec"].get("namespaceSelector", {}).get("matchNames", [])) == {NAMESPACE, exporter_namespace},
                      f"{name}: the ServiceMonitor looks in both namespaces")
        for monitor in by_kind.get("PodMonitor", []):
            if monitor["metadata"]["name"].endswith("-exporter"):
                check(monitor["metadata"]["namespace"] == exporter_namespace, f"{name}: the exporter's PodMonitor is beside it")
    policies = by_kind.get("NetworkPolicy", [])
    check(bool(policies) == bool(values.get("networkPolicy", {}).get("enabled")), f"{name}: NetworkPolicies only when asked for")
    for policy in policies:
        rules = policy["spec"]["ingress"]
        if policy["metadata"]["name"].endswith("-exporter"):
            peers = rules[0]["from"]
            adapter_labels = adapter["spec"]["template"]["metadata"]["labels"]
            check(any(p.get("podSelector", {}).get("matchLabels", {}).items() <= adapter_labels.items()
                      and p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == NAMESPACE
                      for p in peers), f"{name}: the adapter may scrape the exporters")
            pushers = values.get("networkPolicy", {}).get("pushFrom", []) if values.get("exporter", {}).get("push", {}).get("enabled") else []
            check(all(p in peers for p in pushers) and len(peers) == 2 + len(pushers), f"{name}: the exporter's port admits only the adapter, Prometheus and pushFrom")
        elif policy["metadata"]["name"].endswith("-adapter"):
            cidrs = values.get("networkPolicy", {}).get("controlPlaneCIDRs", [])
            https = next(r for r in rules if r["ports"][0]["port"] == "https")
            check([p["ipBlock"]["cidr"] for p in https.get("from", [])] == cidrs, f"{name}: the adapter's HTTPS port admits the control plane")


def check_dashboards_and_rules(name, values, by_kind):
    """Each dashboard file is one ConfigMap for Grafana's sidecar, its JSON byte for byte; the
    PrometheusRule holds the plain rules file's groups."""
    maps = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"]
    files = sorted(os.listdir(DASHBOARDS))
    enabled = values.get("dashboards", {}).get("enabled", True)
    check(len(maps) == (len(files) if enabled else 0), f"{name}: a ConfigMap per dashboard ({len(maps)} of {len(files)})")
    namespace = values.get("dashboards", {}).get("namespace") or NAMESPACE
    for cm in maps:
        check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", f"{name}: {cm['metadata']['name']} has the sidecar's label")
        check(cm["metadata"]["namespace"] == namespace, f"{name}: {cm['metadata']['name']} is in {namespace}")
        (key, text), = cm["data"].items()
        source = key.removeprefix("framescale-")
        with open(os.path.join(DASHBOARDS, source), encoding="utf-8") as f:
            check(text == f.read().rstrip("\n"), f"{name}: {cm['metadata']['name']} holds {source} as it is")
        json.loads(text)
    rules = by_kind.get("PrometheusRule", [])
    enabled = values.get("prometheusRule", {}).get("enabled", False)
    check(len(rules) == (1 if enabled else 0), f"{name}: a PrometheusRule only when asked for")
    for rule in rules:
        with open(RULES, encoding="utf-8") as f:
            check(rule["spec"]["groups"] == yaml.safe_load(f)["groups"], f"{name}: the PrometheusRule holds the rules file's groups")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framescale", required=True)
    args = parser.parse_args()
    chart = helm.Chart.load(CHART)
    for name, values in COMBINATIONS.items():
        check_combination(chart, name, values, args.framescale)
    print("== values that are refused")
    for bad, why in [
        ({"adaptor": {"replicas": 3}}, "additional properties 'adaptor'"),
        ({"adapter": {"backend": "promethus"}}, "must be one of"),
        ({"exporter": {"window": "a minute"}}, "does not match pattern"),
        ({"worker": {"hpa": {"frameTargetMs": "32ms"}}}, "does not match pattern"),
        ({"adapter": {"metricsReaders": [{"kind": "ServiceAccount", "name": "hpa"}]}}, "namespace"),
        ({"exporter": {"hostPaths": {"state": "var/lib/framescale"}}}, "does not match pattern"),
        ({"adapter": {"tls": {"certManager": {"issuerRef": {"nam": "corp-ca"}}}}}, "additional properties 'nam'"),
        ({"adapter": {"tls": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}}}, "name"),
        ({"adapter": {"podDisruptionBudget": {"minAvailable": 3}}}, "additional properties 'minAvailable'"),
        ({"adapter": {"podDisruptionBudget": {"maxUnavailable": 0}}}, "maxUnavailable"),
        ({"image": {"digest": "latest"}}, "does not match pattern"),
        ({"listenAddress": "localhost"}, "does not match pattern"),
        ({"queue": {"url": "http://redis:6379"}}, "does not match pattern"),
        ({"queue": {"backlogPerReplica": "10 frames"}}, "does not match pattern"),
        ({"worker": {"hpa": {"minReplicas": 0}}}, "minimum"),
    ]:
        try:
            chart.validate_schema(bad)
            check(False, f"{bad} was accepted")
        except helm.HelmValuesError as error:
            check(why in str(error), f"{bad}: the message says {why!r}: {error}")
    for bad, why in [
        ({"adapter": {"backend": "prometheus"}}, "needs prometheus.url"),
        ({"exporter": {"enabled": False}}, "keep exporter.enabled"),
        ({"worker": {"hpa": {"minReplicas": 5, "maxReplicas": 2}}}, "is above worker.hpa.maxReplicas"),
        ({"adapter": {"replicas": 2, "metricsConfig": {"score": {"holds": {"both": "10s"}}}}}, "keeps on its own"),
        ({"adapter": {"tls": {"source": "existingSecret", "existingSecret": "adapter-tls"}}}, "needs adapter.tls.existingSecret"),
        ({"queue": {"enabled": True}}, "queue.enabled needs queue.url, queue.existingSecret or queue.bundled.enabled"),
    ]:
        try:
            chart.render(bad, name="fs", namespace=NAMESPACE)
            check(False, f"{bad} rendered")
        except helm.HelmRenderError as error:
            check(why in str(error), f"{bad}: the message says {why!r}: {error}")
    lint = helm.lint(CHART)
    print(f"== helm lint: {lint}")
    if failures:
        print(f"{len(failures)} checks failed")
        sys.exit(1)
    print(f"the chart passes in {len(COMBINATIONS)} combinations")


if __name__ == "__main__":
    main()
