#!/usr/bin/env python3
"""Queue mode and scale to zero on a real cluster (Kubernetes 1.37+: HPAScaleToZero is beta and
on by default): installs charts/framescale with queue.enabled, the bundled Redis and
queue.scaleToZero, and then, with a timeline:

1. idle: the HPA takes the worker Deployment to 0 pods; the backlog metric reads 0 through the
   aggregator;
2. a job of --frames frames submitted from this machine with `framescale submit --wait` (to the
   bundled Redis through its Service's cluster IP): the backlog wakes the Deployment; the first
   frame's done time is compared with the pod's start-up + one HPA sync + 5 s;
3. the queue "down" for 30 s in the middle of the job (`CLIENT PAUSE 30000 ALL`: every client
   times out, nothing is lost): the backlog metric answers 503, never 0, and the HPA never wants
   0 pods meanwhile; the workers resume;
4. a render pod force-deleted (no SIGTERM) in the middle of the job: its frame is reclaimed;
5. the job finishes with every frame done exactly once (duplicates counted, at most the frames in
   flight at the pause and at the kill), and the HPA takes the Deployment back to 0.

    python3 tests/e2e/queue.py --kubeconfig K --image localhost/framescale:0.1.0 \\
        --redis-image localhost/framescale-redis:bookworm --framescale target/release/framescale

tests/e2e/cluster/k8s-137.sh runs it with --queue. Exits non-zero when a check fails.
"""
import argparse
import calendar
import json
import os
import re
import subprocess
import sys
import threading
import time

import helm_python as helm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import CHART, Cluster, available, install, say, wait  # noqa: E402

STREAM = "framescale:frames"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config")))
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--namespace", default="framescale-queue")
    parser.add_argument("--release", default="q")
    parser.add_argument("--image", default="localhost/framescale:0.1.0")
    parser.add_argument("--redis-image", default="localhost/framescale-redis:bookworm")
    parser.add_argument("--pull-policy", default="IfNotPresent")
    parser.add_argument("--framescale", required=True, help="a framescale binary on this machine (submit)")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-cluster-dns", action="store_true",
                        help="the cluster has no DNS: point the workers and the adapter at the queue's cluster IP")
    args = parser.parse_args()
    cluster = Cluster(args.kubeconfig, args.kubectl)
    server = json.loads(cluster.kubectl("version", "-o", "json"))["serverVersion"]
    minor = int("".join(c for c in server["minor"] if c.isdigit()))
    if minor < 37:
        sys.exit(f"Kubernetes {server['gitVersion']}: minReplicas 0 needs HPAScaleToZero (on by default from 1.37)")
    say(f"Kubernetes {server['gitVersion']}")
    exporter_ns = f"{args.namespace}-exporter"
    repository, tag = args.image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": args.pull_policy},
        "adapter": {"scrapeInterval": "2s"},
        "exporter": {"window": "30s", "namespace": exporter_ns},
        "worker": {"slots": 1, "hpa": {"minReplicas": 1, "maxReplicas": 4, "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 30, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        }}},
        # The backlog alone: the fused score of an idle worker on the CPU source reads 1m (its
        # poll loop's CPU), which keeps one pod (docs/queue.md); an idle GPU reads 0.
        "queue": {"enabled": True, "scaleToZero": True, "scaleDownWindowSeconds": 30, "withScore": False, "backlogPerReplica": "50", "claimAfter": "20s",
                  "bundled": {"enabled": True, "image": args.redis_image, "persistence": {"enabled": False}}},
    }
    for ns, level in ((args.namespace, "restricted"), (exporter_ns, "privileged")):
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": level}}}))
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
    chart = helm.Chart.load(CHART)
    say(f"installing {CHART} as {args.release} in {args.namespace}: queue mode, bundled Redis, scale to zero")
    install(config, chart, args.release, values, args.namespace, False)
    prefix = f"{args.release}-framescale"
    worker = f"{prefix}-worker"
    failures = []

    def hpa():
        return cluster.json("-n", args.namespace, "get", "horizontalpodautoscalers.v2.autoscaling", worker)

    def deployment_replicas():
        status = cluster.json("-n", args.namespace, "get", "deployment", worker)["status"]
        return status.get("replicas", 0), status.get("readyReplicas", 0)

    backlog_path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{args.namespace}/deployments.apps/{worker}/render_backlog_frames"

    def backlog():
        result = subprocess.run([args.kubectl, "--kubeconfig", args.kubeconfig, "get", "--raw", backlog_path],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return None, result.stderr.strip()
        return json.loads(result.stdout)["items"][0]["value"], ""

    try:
        for version in ("v1beta2", "v1beta1"):
            wait(f"APIService {version} Available", 240, lambda v=version: available(cluster, f"{v}.custom.metrics.k8s.io"))
        wait("the bundled Redis ready", 180, lambda: cluster.json("-n", args.namespace, "get", "deployment", f"{prefix}-queue")["status"].get("readyReplicas", 0) >= 1)
        redis_ip = cluster.json("-n", args.namespace, "get", "service", f"{prefix}-queue")["spec"]["clusterIP"]
        url = f"redis://{redis_ip}:6379/0"
        if args.no_cluster_dns:
            # The chart names the bundled Redis by its Service's DNS name; a cluster without DNS
            # (the repository's one-node harness) gets its cluster IP instead.
            for deployment in (worker, f"{prefix}-adapter"):
                cluster.kubectl("-n", args.namespace, "set", "env", f"deployment/{deployment}", f"FRAMESCALE_QUEUE_URL={url}")
                cluster.kubectl("-n", args.namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=180s")
        say(f"the queue: {url}")
        idle = time.time()
        wait("the HPA to take the idle workers to 0 pods", 300, lambda: hpa()["status"].get("desiredReplicas") == 0 and deployment_replicas()[0] == 0, every=3)
        # Replicas 0 is not yet no pod: a terminating worker's last blocking read (up to 1 s after
        # its SIGTERM) could take the job's first frame and make the wake-up look instant.
        wait("the last render pod gone", 120, lambda: not cluster.json("-n", args.namespace, "get", "pods", "-l", "app.kubernetes.io/component=worker")["items"], every=1)
        say(f"0 render pods {time.time() - idle:.0f}s after the workers were Ready-able; backlog {backlog()[0]}")
        if backlog()[0] != "0":
            failures.append(f"the idle backlog reads {backlog()}")

        def redis(*command):
            return subprocess.run(["redis-cli", "-h", redis_ip, *command], capture_output=True, text=True, timeout=10).stdout.strip()

        submitted = time.time()
        submit = subprocess.Popen([args.framescale, "submit", "--queue-url", url, "--frames", f"1..{args.frames}",
                                   "--width", "192", "--height", "192", "--samples", "16", "--wait", "--progress-every", "5s",
                                   "--timeout", "15m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress_lines = []
        threading.Thread(target=lambda: progress_lines.extend(submit.stderr), daemon=True).start()

        def done():
            text = redis("SCARD", f"{STREAM}:job:j1:done")
            return int(text) if text.isdigit() else 0

        first = wait("the first frame done", 180, lambda: done() >= 1 and time.time(), every=0.5)

        def startup():
            # Created to its container running: a worker pulls from then on, before its
            # readiness probe makes it Ready (whole seconds, as the API writes them).
            pods = cluster.json("-n", args.namespace, "get", "pods", "-l", "app.kubernetes.io/component=worker")["items"]
            started = [parse_time(status["state"]["running"]["startedAt"]) - parse_time(pod["metadata"]["creationTimestamp"])
                       for pod in pods for status in pod["status"].get("containerStatuses", [])
                       if "running" in status.get("state", {})]
            return (min(started),) if started else None  # a tuple: 0 s is an answer

        startup = wait("a render pod's start-up", 30, startup, every=0.5)[0]
        bound = startup + 5 + 5
        say(f"first frame done {first - submitted:.1f}s after the submit; pod start-up {startup:.0f}s (+ one 5 s HPA sync + 5 s = {bound:.0f}s)")
        if not first - submitted <= bound:
            failures.append(f"the first frame took {first - submitted:.1f}s, over start-up + sync + 5 s ({bound:.0f}s)")

        wait("a third of the frames done, on more than one pod", 600, lambda: done() >= args.frames // 3 and deployment_replicas()[1] >= 2, every=2)
        say(f"replicas {deployment_replicas()}, HPA {hpa()['status'].get('currentMetrics')}")
        in_flight = int((redis("XPENDING", STREAM, "render").splitlines() or ["0"])[0] or 0)
        paused = time.time()
        redis("CLIENT", "PAUSE", "30000", "ALL")
        say("the queue paused for 30 s (CLIENT PAUSE 30000 ALL: every client times out)")
        lowest, answers = None, set()
        while time.time() - paused < 30:
            value, error = backlog()
            answers.add(value if value is not None else ("503" if "ServiceUnavailable" in error or "unavailable" in error.lower() else error[:80]))
            desired = hpa()["status"].get("desiredReplicas")
            lowest = desired if lowest is None else min(lowest, desired)
            time.sleep(3)
        say(f"while the queue was down: backlog answers {sorted(map(str, answers))}; the HPA's lowest desired replicas {lowest}")
        if "0" in answers:
            failures.append("the backlog read 0 while the queue was down")
        if lowest == 0:
            failures.append("the HPA wanted 0 pods while the queue was down")
        wait("the workers to resume", 120, lambda: done() > 0 and redis("XLEN", STREAM).isdigit(), every=2)
        before = done()
        wait("frames done again after the pause", 120, lambda: done() > before, every=2)
        victim = sorted(p["metadata"]["name"] for p in cluster.json("-n", args.namespace, "get", "pods", "-l",
                                                                      "app.kubernetes.io/component=worker")["items"])[0]
        cluster.kubectl("-n", args.namespace, "delete", "pod", victim, "--grace-period=0", "--force")
        say(f"force-deleted render pod {victim} at {done()}/{args.frames} frames done")
        try:
            stdout, _ = submit.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            submit.kill()
            stdout, _ = submit.communicate()
        say(f"submit exited {submit.returncode}: {stdout.strip().splitlines()[-1] if stdout.strip() else ''}")
        finished = re.search(r"finished in ([\d.]+) s: (\d+) done, (\d+) failed, (\d+) duplicates", stdout)
        if submit.returncode != 0 or not finished:
            failures.append(f"the job did not finish: {stdout}{''.join(progress_lines[-5:])}")
        else:
            seconds, ok, failed, duplicates = float(finished[1]), int(finished[2]), int(finished[3]), int(finished[4])
            say(f"job: {ok} done, {failed} failed, {duplicates} duplicates in {seconds:.0f}s")
            if (ok, failed) != (args.frames, 0):
                failures.append(f"{ok} done and {failed} failed of {args.frames}")
            # A frame in flight when the queue paused for longer than the claim time may be
            # reclaimed while its holder waits to complete it: rendered twice, counted.
            bound = in_flight + 1
            say(f"duplicates bound: {in_flight} frames in flight at the pause + 1 held by the deleted pod = {bound}")
            if duplicates > bound:
                failures.append(f"{duplicates} duplicates: more than the frames in flight at the pause and the kill ({bound})")
        ended = time.time()
        wait("the HPA to take the workers back to 0", 300, lambda: hpa()["status"].get("desiredReplicas") == 0 and deployment_replicas()[0] == 0, every=3)
        say(f"back to 0 pods {time.time() - ended:.0f}s after the job finished (scale-down window 30 s)")
        dead = redis("XLEN", f"{STREAM}:dead")
        if dead not in ("0", ""):
            failures.append(f"{dead} entries in the dead-letter stream")
    finally:
        if not args.keep:
            config.uninstall(args.release)
            for ns in (args.namespace, exporter_ns):
                cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=180s", check=False)
            say("uninstalled")
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        sys.exit(1)
    say("PASS: idle at 0 pods, woken by the backlog, every frame done once through a queue outage and a killed pod, back to 0")


def parse_time(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


if __name__ == "__main__":
    main()
