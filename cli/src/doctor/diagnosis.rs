//! What the facts mean: one row per check, each `ok`, `warn` or `FAIL`, with what was seen and,
//! for what does not work, why and what to do. Every message here is listed, with its fix, in
//! docs/troubleshooting.md.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::facts::{Facts, Failure, MetricFacts};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, with something to look at.
    Warn,
    /// Keeps the HPA from scaling.
    Fail,
}

impl Verdict {
    /// As printed.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One checked thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What was checked.
    pub check: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was seen.
    pub detail: String,
    /// What to do, where something is wrong.
    pub fix: Option<String>,
}

fn row(
    check: impl Into<String>,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: Option<&str>,
) -> Row {
    Row {
        check: check.into(),
        verdict,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

/// The rows for `facts`, in the order a reader follows the path of a metric.
pub fn diagnose(facts: &Facts) -> Vec<Row> {
    let mut rows = Vec::new();
    let hpa = match &facts.hpa {
        Ok(hpa) => hpa,
        Err(failure) => {
            rows.push(api_failure(
                &format!("HPA {}/{}", facts.namespace, facts.name),
                failure,
                "horizontalpodautoscalers",
            ));
            rows.extend(api_services(facts));
            return rows;
        }
    };
    rows.push(hpa_row(facts, hpa));
    rows.extend(conditions(hpa));
    rows.extend(api_services(facts));
    if let Some(Err(failure)) = &facts.scale {
        rows.push(api_failure(
            "scale target",
            failure,
            "the scale subresource",
        ));
    }
    let pods = running_pods(facts);
    for metric in &facts.metrics {
        rows.extend(metric_rows(facts, metric, pods.as_ref()));
    }
    rows
}

fn hpa_row(facts: &Facts, hpa: &Value) -> Row {
    let spec = &hpa["spec"];
    let target = &spec["scaleTargetRef"];
    let metrics: Vec<&str> = facts.metrics.iter().map(|m| m.name.as_str()).collect();
    row(
        format!("HPA {}/{}", facts.namespace, facts.name),
        Verdict::Ok,
        format!(
            "{} scales {} {} between {} and {} replicas on {}; now {} (desired {})",
            hpa["apiVersion"].as_str().unwrap_or("?"),
            target["kind"].as_str().unwrap_or("?"),
            target["name"].as_str().unwrap_or("?"),
            spec["minReplicas"].as_i64().unwrap_or(1),
            spec["maxReplicas"].as_i64().unwrap_or(0),
            if metrics.is_empty() {
                "no metric".to_owned()
            } else {
                metrics.join(", ")
            },
            hpa["status"]["currentReplicas"].as_i64().unwrap_or(0),
            hpa["status"]["desiredReplicas"].as_i64().unwrap_or(0),
        ),
        None,
    )
}

/// The HPA's own conditions, as the controller wrote them.
fn conditions(hpa: &Value) -> Vec<Row> {
    let Some(conditions) = hpa["status"]["conditions"].as_array() else {
        return vec![row(
            "HPA conditions",
            Verdict::Warn,
            "none yet: the controller has not synced this HPA",
            Some(
                "wait one sync period (15 s by default); if it stays so, check kube-controller-manager's log",
            ),
        )];
    };
    conditions
        .iter()
        .map(|c| {
            let (kind, status) = (c["type"].as_str().unwrap_or("?"), c["status"].as_str().unwrap_or("?"));
            let reason = c["reason"].as_str().unwrap_or("");
            let message = c["message"].as_str().unwrap_or("");
            let detail = format!("{kind}={status} ({reason}): {message}");
            let check = format!("HPA {kind}");
            match (kind, status) {
                ("ScalingActive", "False") if reason.starts_with("FailedGet") => row(
                    check,
                    Verdict::Fail,
                    detail,
                    Some("the HPA cannot read its metric: the APIService and metric rows below say why"),
                ),
                ("ScalingActive", "False") if reason == "ScalingDisabled" => row(
                    check,
                    Verdict::Warn,
                    detail,
                    Some("the target is scaled to 0 replicas: scale it up to let the HPA act"),
                ),
                ("ScalingActive" | "AbleToScale", "False") => row(
                    check,
                    Verdict::Fail,
                    detail,
                    Some("read the message: the controller cannot compute or apply a scale"),
                ),
                ("ScalingLimited", "True") if reason == "TooManyReplicas" => row(
                    check,
                    Verdict::Warn,
                    detail,
                    Some("the HPA wants more than maxReplicas: raise maxReplicas, or the capacity of a pod"),
                ),
                _ => row(check, Verdict::Ok, detail, None),
            }
        })
        .collect()
}

/// The custom metrics APIServices: registered, pointing at a Service, available.
fn api_services(facts: &Facts) -> Vec<Row> {
    let registered = facts.api_services.iter().filter(|(_, a)| a.is_ok()).count();
    let available_versions = facts
        .api_services
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .filter(|s| {
            s["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        })
        .count();
    facts
        .api_services
        .iter()
        .map(|(name, answer)| {
            let check = format!("APIService {name}");
            let service = match answer {
                Err(failure) if failure.code == 404 => {
                    let verdict = if registered == 0 { Verdict::Fail } else { Verdict::Warn };
                    return row(
                        check,
                        verdict,
                        "not registered",
                        Some("install the chart (it registers both versions), or apply its APIService objects"),
                    );
                }
                Err(failure) => return api_failure(&check, failure, "apiservices"),
                Ok(service) => service,
            };
            let target = &service["spec"]["service"];
            let backend = format!(
                "Service {}/{}",
                target["namespace"].as_str().unwrap_or("?"),
                target["name"].as_str().unwrap_or("?")
            );
            let available = service["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Available");
            let Some(available) = available else {
                return row(check, Verdict::Warn, format!("{backend}; no Available condition yet"), Some("wait a few seconds for the kube-apiserver to check it"));
            };
            let reason = available["reason"].as_str().unwrap_or("");
            let message = available["message"].as_str().unwrap_or("");
            if available["status"] == "True" {
                let other = !target["name"].as_str().unwrap_or("").contains("framescale");
                return row(
                    check,
                    if other { Verdict::Warn } else { Verdict::Ok },
                    format!("available, served by {backend}"),
                    other.then_some("this Service does not look like framescale's adapter: another adapter (prometheus-adapter, KEDA) may own custom.metrics.k8s.io"),
                );
            }
            // The HPA controller reads the newest available version: the other one failing
            // breaks discovery (kubectl warnings, namespaces that do not finish deleting), not
            // the scaling.
            let verdict = if available_versions > 0 { Verdict::Warn } else { Verdict::Fail };
            row(
                check,
                verdict,
                format!("unavailable, {reason}: {message}"),
                Some(api_service_fix(reason, message)),
            )
        })
        .collect()
}

/// What to do for an APIService that is not available, from the kube-aggregator's reason and
/// message.
pub fn api_service_fix(reason: &str, message: &str) -> &'static str {
    let says = |words: &[&str]| words.iter().any(|w| message.contains(w));
    match reason {
        "ServiceNotFound" => {
            "the adapter's Service does not exist: install the chart, or fix spec.service of the APIService"
        }
        "ServicePortError" => {
            "the Service has no port the APIService names (443): fix the Service's ports"
        }
        "EndpointsNotFound" | "MissingEndpoints" => {
            "no ready adapter pod behind the Service: kubectl get pods -l app.kubernetes.io/component=adapter; read its log and /readyz"
        }
        _ if says(&["x509", "certificate", "tls:"]) => {
            "TLS: the APIService's caBundle does not verify the adapter's serving certificate; re-install the chart (it signs both), or check cert-manager's cainjector"
        }
        _ if says(&[": 401", ": 403", "Unauthorized", "Forbidden"]) => {
            "the adapter refused the kube-apiserver: check its front-proxy client CA and allowed names (configmap kube-system/extension-apiserver-authentication) and the adapter's RBAC to read it"
        }
        _ if says(&[
            "timeout",
            "connection refused",
            "no route to host",
            "context deadline",
            "dial tcp",
        ]) =>
        {
            "network: the kube-apiserver cannot reach the adapter's pods (a NetworkPolicy, a firewall, or a control plane without a route to the pod network)"
        }
        _ => "read the message: the kube-apiserver cannot use the adapter",
    }
}

/// A failed read of the API: what it means for `what`.
fn api_failure(check: &str, failure: &Failure, what: &str) -> Row {
    let fix = match failure.code {
        0 => {
            "cannot reach the API server: check the kubeconfig's server, network and certificates (kubectl cluster-info)"
        }
        401 => {
            "the API server rejected your credentials: renew the kubeconfig's token or certificate"
        }
        403 => "your user may not read this: ask for get on it (kubectl auth can-i get …)",
        404 => "it does not exist: check the namespace and the name (kubectl get hpa -A)",
        _ => "read the message",
    };
    row(
        check,
        Verdict::Fail,
        format!("{} {}: {}", what, status_text(failure), failure.message),
        Some(fix),
    )
}

fn status_text(failure: &Failure) -> String {
    match failure.code {
        0 => "unreadable".to_owned(),
        code if failure.reason.is_empty() => format!("answered {code}"),
        code => format!("answered {code} {}", failure.reason),
    }
}

/// The running pods the HPA's target selects, by name, with their node.
fn running_pods(facts: &Facts) -> Option<BTreeMap<String, String>> {
    let pods = facts.pods.as_ref()?.as_ref().ok()?;
    Some(
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
    )
}

fn metric_rows(
    facts: &Facts,
    metric: &MetricFacts,
    pods: Option<&BTreeMap<String, String>>,
) -> Vec<Row> {
    let check = format!("metric {}", metric.name);
    if metric.kind != "Pods" {
        return vec![row(
            check,
            Verdict::Ok,
            format!("a {} metric: not framescale's, not checked", metric.kind),
            None,
        )];
    }
    let mut rows = Vec::new();
    match &metric.target {
        Some(q) if framescale_core::quantity::parse_milli(q).is_none() => rows.push(row(
            format!("{check} target"),
            Verdict::Fail,
            format!("averageValue {q:?} is not a Kubernetes quantity"),
            Some("write the target as a quantity: 1, 1500m, 32, 2.5"),
        )),
        None => rows.push(row(
            format!("{check} target"),
            Verdict::Fail,
            "no averageValue",
            Some("a Pods metric needs target.type AverageValue with averageValue"),
        )),
        Some(_) => {}
    }
    let Some(answer) = &metric.answer else {
        return rows;
    };
    match answer {
        Ok(list) => rows.extend(values_rows(facts, &check, list, pods)),
        Err(failure) if failure.code == 404 && !served(facts).is_empty() && !served(facts).contains(&metric.name) => {
            let served: Vec<String> = served(facts).into_iter().collect();
            rows.push(row(
                check,
                Verdict::Fail,
                format!("the adapter does not serve {}; it serves {}", metric.name, served.join(", ")),
                Some("name one of the served metrics in the HPA, or add it to the adapter's metrics file (docs/configuration.md)"),
            ));
        }
        Err(failure) if failure.code == 404 && failure.message.contains("no fresh value") => {
            rows.push(row(
                check.clone(),
                Verdict::Fail,
                format!("no pod has a fresh value: {}", failure.message),
                Some("see the pod rows: each pod's node needs a running exporter that reads its frames"),
            ));
            rows.extend(missing_pods(facts, pods.map(|p| p.keys().cloned().collect()).unwrap_or_default(), pods));
        }
        Err(failure) if failure.code == 503 => rows.push(row(
            check,
            Verdict::Fail,
            format!("the adapter cannot read its data: {}", failure.message),
            Some("the adapter's backend is down: its exporters (direct) or Prometheus (--prometheus-url); read the adapter's log and /readyz"),
        )),
        Err(failure) => rows.push(api_failure(&check, failure, "the custom metrics API")),
    }
    rows
}

/// The metric names the adapter's discovery lists (`pods/<name>` resources).
fn served(facts: &Facts) -> BTreeSet<String> {
    let Some(Ok(list)) = &facts.served else {
        return BTreeSet::new();
    };
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str()?.strip_prefix("pods/").map(str::to_owned))
        .collect()
}

fn values_rows(
    facts: &Facts,
    check: &str,
    list: &Value,
    pods: Option<&BTreeMap<String, String>>,
) -> Vec<Row> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let valued: BTreeSet<String> = items
        .iter()
        .filter_map(|i| i["describedObject"]["name"].as_str().map(str::to_owned))
        .collect();
    let numbers: Vec<f64> = items
        .iter()
        .filter_map(|i| framescale_core::quantity::parse_milli(i["value"].as_str()?))
        .map(|m| m as f64 / 1000.0)
        .collect();
    let mean = numbers.iter().sum::<f64>() / numbers.len().max(1) as f64;
    let missing: Vec<String> = pods
        .map(|p| {
            p.keys()
                .filter(|name| !valued.contains(*name))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let verdict = if valued.is_empty() {
        Verdict::Fail
    } else {
        Verdict::Ok
    };
    let mut rows = vec![row(
        check,
        verdict,
        format!(
            "{} of {} running pods have a value{}",
            valued.len(),
            pods.map_or(valued.len(), BTreeMap::len),
            if numbers.is_empty() {
                String::new()
            } else {
                format!(", mean {mean:.3}")
            }
        ),
        (verdict == Verdict::Fail).then_some("no pod has a value: see the pod rows"),
    )];
    rows.extend(missing_pods(facts, missing, pods));
    rows
}

/// A row for each running pod without a value, saying what its node's exporter is doing.
fn missing_pods(
    facts: &Facts,
    missing: Vec<String>,
    pods: Option<&BTreeMap<String, String>>,
) -> Vec<Row> {
    let exporters: Vec<&Value> = match &facts.exporters {
        Some(Ok(list)) => list["items"].as_array().into_iter().flatten().collect(),
        _ => Vec::new(),
    };
    missing
        .into_iter()
        .map(|pod| {
            let node = pods.and_then(|p| p.get(&pod)).cloned().unwrap_or_default();
            let on_node = exporters.iter().find(|e| e["spec"]["nodeName"] == node.as_str());
            let ready = |e: &Value| {
                e["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            };
            let check = format!("pod {pod}");
            match on_node {
                None => row(
                    check,
                    Verdict::Warn,
                    format!("no fresh value; no framescale exporter runs on node {node}"),
                    Some("the exporter DaemonSet does not cover this node: check its nodeSelector and tolerations (exporter.nodeSelector, exporter.tolerations)"),
                ),
                Some(e) if !ready(e) => row(
                    check,
                    Verdict::Warn,
                    format!(
                        "no fresh value; the exporter {} on node {node} is not ready",
                        e["metadata"]["name"].as_str().unwrap_or("?")
                    ),
                    Some("read that exporter's log (kubectl logs); /readyz says what it waits for"),
                ),
                Some(e) => row(
                    check,
                    Verdict::Warn,
                    format!(
                        "no fresh value, though the exporter {} on node {node} is ready",
                        e["metadata"]["name"].as_str().unwrap_or("?")
                    ),
                    Some("the pod wrote no frame the exporter reads within its window: check that it logs Blender's lines or framescale.frame lines (docs/frame-line-format.md), and that it has work"),
                ),
            }
        })
        .collect()
}

/// Whether the HPA can scale: no check failed.
pub fn can_scale(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.verdict != Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kube_aggregator_failure_has_its_fix() {
        let cases = [
            (
                "ServiceNotFound",
                r#"service/framescale-adapter in "framescale" is not present"#,
                "does not exist",
            ),
            (
                "MissingEndpoints",
                r#"endpoints for service/framescale-adapter in "framescale" have no addresses with port name "https""#,
                "no ready adapter pod",
            ),
            (
                "FailedDiscoveryCheck",
                r#"failing or missing response from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2: Get "https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2": x509: certificate signed by unknown authority"#,
                "TLS",
            ),
            (
                "FailedDiscoveryCheck",
                "failing or missing response from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2: bad status from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2: 403",
                "refused the kube-apiserver",
            ),
            (
                "FailedDiscoveryCheck",
                r#"failing or missing response from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2: Get "https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2": dial tcp 10.96.0.12:443: i/o timeout"#,
                "network",
            ),
        ];
        for (reason, message, want) in cases {
            let fix = api_service_fix(reason, message);
            assert!(fix.contains(want), "{reason}: {message} → {fix}");
        }
    }

    #[test]
    fn a_hpa_that_is_not_there_is_a_failure_with_the_fix() {
        let facts = Facts {
            namespace: "render".into(),
            name: "nope".into(),
            hpa: Err(Failure {
                code: 404,
                reason: "NotFound".into(),
                message: r#"horizontalpodautoscalers.autoscaling "nope" not found"#.into(),
            }),
            api_services: vec![],
            scale: None,
            pods: None,
            metrics: vec![],
            served: None,
            exporters: None,
        };
        let rows = diagnose(&facts);
        assert_eq!(rows[0].verdict, Verdict::Fail);
        assert!(rows[0].detail.contains("answered 404 NotFound"), "{rows:?}");
        assert!(!can_scale(&rows));
    }
}
