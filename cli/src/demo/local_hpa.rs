//! The demo's HPA: reads the adapter's custom metrics API over HTTPS exactly as the HPA
//! controller does (a Pods metric: `pods/*/<metric>?labelSelector=…`, values as quantities
//! read in milli units) and runs core's HPA model on them every sync period.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use framescale_core::quantity;
use framescale_sim::hpa::behavior::Behavior;
use framescale_sim::hpa::controller::{
    Controller, ControllerConfig, Decision, HpaSpec, MetricSource, Observation, Scale,
};
use framescale_sim::hpa::replicas::PodState;
use serde::Deserialize;

use super::fleet::{DEPLOYMENT, NAMESPACE, SELECTOR};

/// The score metric the demo's HPA scales on, target `averageValue: 1`.
pub const SCORE_METRIC: &str = framescale_core::metrics::custom::SCALING_SCORE;
/// The queue's backlog, an Object metric on the Deployment (`--shared-queue`).
pub const BACKLOG_METRIC: &str = framescale_adapter::backlog::DEFAULT_NAME;

/// A client of the adapter's custom metrics API that trusts only the demo's certificate.
pub struct MetricsClient {
    agent: ureq::Agent,
    base: String,
}

impl MetricsClient {
    /// A client of `base` (`https://127.0.0.1:port`) trusting the certificate `cert_pem`.
    pub fn new(base: String, cert_pem: &str) -> anyhow::Result<MetricsClient> {
        let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(cert_pem.as_bytes())
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            bail!("the demo's certificate has no certificate in it");
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(MetricsClient { agent, base })
    }

    /// Values of a Pods metric for the demo's pods, milli units by pod name.
    pub fn pods_metric(&self, metric: &str) -> Result<BTreeMap<String, i64>, String> {
        let url = format!(
            "{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{metric}?labelSelector={}",
            self.base,
            SELECTOR.replace('=', "%3D")
        );
        parse_metric_list(&self.get(&url)?)
    }

    /// The value of an Object metric of the demo's Deployment, milli units.
    pub fn deployment_metric(&self, metric: &str) -> Result<i64, String> {
        let url = format!(
            "{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/deployments.apps/{DEPLOYMENT}/{metric}",
            self.base
        );
        let body = self.get(&url)?;
        let values = parse_metric_list(&body)?;
        values
            .get(DEPLOYMENT)
            .copied()
            .ok_or_else(|| format!("no value for deployments.apps {DEPLOYMENT} in {body}"))
    }

    /// The body of a 200 answer, or the status and body of any other.
    fn get(&self, url: &str) -> Result<String, String> {
        let mut response = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!(
                "HTTP {}: {}",
                response.status().as_u16(),
                body.trim()
            ));
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct MetricValueList {
    items: Vec<MetricValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricValue {
    described_object: DescribedObject,
    value: String,
}

#[derive(Deserialize)]
struct DescribedObject {
    name: String,
}

/// A `MetricValueList` as milli units by pod name.
fn parse_metric_list(body: &str) -> Result<BTreeMap<String, i64>, String> {
    let list: MetricValueList =
        serde_json::from_str(body).map_err(|e| format!("not a MetricValueList: {e}"))?;
    list.items
        .into_iter()
        .map(|item| {
            let milli = quantity::parse_milli(&item.value)
                .ok_or_else(|| format!("{:?} is not a quantity", item.value))?;
            Ok((item.described_object.name, milli))
        })
        .collect()
}

/// The HPA's spec, read from a HorizontalPodAutoscaler manifest (`spec.minReplicas`,
/// `spec.maxReplicas`, `spec.behavior`; its metrics are the demo's own). `minReplicas: 0` is read
/// as written; whether something can wake the Deployment from zero is the caller's to say.
pub fn spec_from_manifest(path: &Path) -> anyhow::Result<HpaSpec> {
    #[derive(Deserialize)]
    struct Manifest {
        spec: ManifestSpec,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ManifestSpec {
        #[serde(default = "one")]
        min_replicas: i32,
        max_replicas: i32,
        behavior: Option<Behavior>,
    }
    fn one() -> i32 {
        1
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--hpa: cannot read {}", path.display()))?;
    let manifest: Manifest = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("--hpa: {} is not an HPA manifest", path.display()))?;
    let spec = manifest.spec;
    if spec.min_replicas < 0 || spec.max_replicas < spec.min_replicas.max(1) {
        bail!(
            "--hpa: need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1, got {} and {}",
            spec.min_replicas,
            spec.max_replicas
        );
    }
    Ok(HpaSpec {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        behavior: spec.behavior,
    })
}

/// The HPA's spec from flags: min/max replicas and the default behavior with its scale-down
/// stabilization window set. A minimum of 0 is taken as given, as from a manifest.
pub fn spec_from_flags(
    min_replicas: i32,
    max_replicas: i32,
    scale_down_window: Duration,
) -> anyhow::Result<HpaSpec> {
    if min_replicas < 0 || max_replicas < min_replicas.max(1) {
        bail!(
            "need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got {min_replicas} and {max_replicas}"
        );
    }
    let behavior = serde_json::json!({
        "scaleDown": { "stabilizationWindowSeconds": scale_down_window.as_secs() }
    });
    Ok(HpaSpec {
        min_replicas,
        max_replicas,
        behavior: Some(serde_json::from_value(behavior)?),
    })
}

/// One HPA over the demo's Deployment.
pub struct LocalHpa {
    controller: Controller,
    spec: HpaSpec,
}

impl LocalHpa {
    /// An HPA with `spec`, run with `config`.
    #[must_use]
    pub fn new(spec: HpaSpec, config: ControllerConfig) -> LocalHpa {
        LocalHpa {
            controller: Controller::new(config),
            spec,
        }
    }

    /// One sync at `now` seconds with `replicas` running and what the metrics API returned.
    pub fn sync(&mut self, now: f64, replicas: i32, observations: &[Observation]) -> Decision {
        let scale = Scale {
            spec_replicas: replicas,
            status_replicas: replicas,
        };
        self.controller.sync(now, &self.spec, scale, observations)
    }
}

/// The score as the HPA observes it: a Pods metric at `averageValue: 1` over the pods the
/// selector lists, with the values the metrics API returned (or why it could not).
pub fn score_observation(
    pods: Vec<PodState>,
    scores: Result<BTreeMap<String, i64>, String>,
) -> Observation {
    match scores {
        Ok(values_milli) => Observation::PodsAverageValue {
            name: SCORE_METRIC.into(),
            target_milli: 1000,
            pods,
            values_milli,
        },
        Err(message) => Observation::Failed {
            reason: "FailedGetPodsMetric".into(),
            message: format!("unable to get metric {SCORE_METRIC}: {message}"),
        },
    }
}

/// The backlog as the HPA observes it: an Object metric on the Deployment with an
/// `averageValue` target of `per_replica` frames, its value in milli units (or why it could not
/// be read).
pub fn backlog_observation(backlog: Result<i64, String>, per_replica: f64) -> Observation {
    match backlog {
        Ok(usage_milli) => Observation::AverageValue {
            source: MetricSource::Object,
            description: format!("Deployment metric {BACKLOG_METRIC}"),
            usage_milli,
            target_average_milli: (per_replica * 1000.0).round() as i64,
        },
        Err(message) => Observation::Failed {
            reason: "FailedGetObjectMetric".into(),
            message: format!("unable to get metric {BACKLOG_METRIC}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_lists_are_read_in_milli_units() {
        let body = r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},
            "items":[{"describedObject":{"kind":"Pod","namespace":"demo","name":"worker-0","apiVersion":"/v1"},
            "metric":{"name":"render_scaling_score","selector":null},"timestamp":"2026-11-22T00:00:00Z","value":"1250m"},
            {"describedObject":{"kind":"Pod","namespace":"demo","name":"worker-1","apiVersion":"/v1"},
            "metric":{"name":"render_scaling_score","selector":null},"timestamp":"2026-11-22T00:00:00Z","value":"2"}]}"#;
        let values = parse_metric_list(body).unwrap();
        assert_eq!(
            values,
            BTreeMap::from([("worker-0".into(), 1250), ("worker-1".into(), 2000)])
        );
        assert!(parse_metric_list("{}").is_err());
        let bad = body.replace("\"2\"", "\"2Ki\"");
        assert!(parse_metric_list(&bad).unwrap_err().contains("2Ki"));
    }

    #[test]
    fn hpa_manifests_give_min_max_and_behavior() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hpa.yaml");
        std::fs::write(
            &path,
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: worker}\n\
             spec:\n  maxReplicas: 6\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 20\n",
        )
        .unwrap();
        let spec = spec_from_manifest(&path).unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (1, 6));
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(20));
        std::fs::write(&path, "spec: {minReplicas: 0, maxReplicas: 2}\n").unwrap();
        assert_eq!(spec_from_manifest(&path).unwrap().min_replicas, 0);
        for bad in [
            "spec: {minReplicas: 3, maxReplicas: 2}\n",
            "spec: {minReplicas: -1, maxReplicas: 2}\n",
            "spec: {minReplicas: 0, maxReplicas: 0}\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let error = spec_from_manifest(&path).unwrap_err().to_string();
            assert!(error.contains("minReplicas"), "{error}");
        }
    }
}
