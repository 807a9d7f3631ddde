//! What `framescale doctor` reads from the Kubernetes API, as the API answered it: the HPA, the
//! custom metrics APIServices, the scale target's selector, the pods it selects, each metric
//! the HPA asks for through the aggregated API, what the adapter serves, and the exporters.
//! Nothing is judged here ([`super::diagnosis`] does); an answer that is an error is kept as
//! the API's `Status`.

use serde_json::Value;

/// The two versions of the custom metrics API, newest first.
pub const API_SERVICES: [&str; 2] = [
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.custom.metrics.k8s.io",
];

/// An answer of the API that is not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status; 0 when no answer came (connection, TLS, timeout).
    pub code: u16,
    /// The Status' reason (`NotFound`, `Forbidden`, …), if any.
    pub reason: String,
    /// The Status' message, or the transport error.
    pub message: String,
}

/// One answer: the JSON object, or why there is none.
pub type Answer = Result<Value, Failure>;

/// One metric of the HPA's spec.
#[derive(Debug, Clone)]
pub struct MetricFacts {
    /// `Pods`, `Object`, `Resource`, `External`, `ContainerResource`.
    pub kind: String,
    /// The metric's name (a resource's name for `Resource`).
    pub name: String,
    /// The target's quantity as written (`averageValue`, `value` or `averageUtilization`).
    pub target: Option<String>,
    /// The aggregated API's answer for the selected pods (`Pods` metrics only).
    pub answer: Option<Answer>,
}

/// Everything read, in the order the checks use it.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The HPA's namespace.
    pub namespace: String,
    /// The HPA's name.
    pub name: String,
    /// The HPA (autoscaling/v2, or v2beta2 where v2 is not served).
    pub hpa: Answer,
    /// Each APIService of [`API_SERVICES`].
    pub api_services: Vec<(String, Answer)>,
    /// The scale subresource of the HPA's target (its `status.selector`).
    pub scale: Option<Answer>,
    /// The pods the selector selects.
    pub pods: Option<Answer>,
    /// The HPA's metrics.
    pub metrics: Vec<MetricFacts>,
    /// Discovery of the custom metrics API: the metrics the adapter serves.
    pub served: Option<Answer>,
    /// framescale's exporter pods, in every namespace.
    pub exporters: Option<Answer>,
}

/// Reads from the API through `client`.
pub struct Reader {
    client: kube::Client,
}

impl Reader {
    /// A reader over `client`.
    pub fn new(client: kube::Client) -> Self {
        Reader { client }
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Answer {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| failure(0, "", &e.to_string()))?;
        match self.client.request_text(request).await {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| failure(200, "", &format!("the answer is not JSON: {e}"))),
            Err(kube::Error::Api(status)) => {
                Err(failure(status.code, &status.reason, &status.message))
            }
            Err(error) => Err(failure(
                0,
                "",
                &crate::failure::describe(&anyhow::Error::new(error)),
            )),
        }
    }

    /// Reads everything about HPA `namespace/name`.
    pub async fn facts(&self, namespace: &str, name: &str) -> Facts {
        let mut hpa = self
            .get(&format!(
                "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
            ))
            .await;
        if matches!(&hpa, Err(f) if f.code == 404) {
            // No autoscaling/v2 (Kubernetes before 1.23), which a real API server answers with
            // a `NotFound` Status as it would a missing HPA: the same HPA in v2beta2. Missing
            // from both, v2's answer is the one reported.
            let old = self
                .get(&format!(
                    "/apis/autoscaling/v2beta2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
                ))
                .await;
            if old.is_ok() {
                hpa = old;
            }
        }
        let mut api_services = Vec::new();
        for service in API_SERVICES {
            let answer = self
                .get(&format!(
                    "/apis/apiregistration.k8s.io/v1/apiservices/{service}"
                ))
                .await;
            api_services.push((service.to_owned(), answer));
        }
        let mut facts = Facts {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            hpa,
            api_services,
            scale: None,
            pods: None,
            metrics: Vec::new(),
            served: None,
            exporters: None,
        };
        let Ok(spec) = facts.hpa.as_ref().map(|h| h["spec"].clone()) else {
            return facts;
        };
        let version = Reader::custom_metrics_version(&facts);
        facts.served = Some(
            self.get(&format!("/apis/custom.metrics.k8s.io/{version}"))
                .await,
        );
        let selector = self.selector(&mut facts, &spec["scaleTargetRef"]).await;
        if let Some(selector) = &selector {
            let query = encode(selector);
            facts.pods = Some(
                self.get(&format!(
                    "/api/v1/namespaces/{namespace}/pods?labelSelector={query}"
                ))
                .await,
            );
        }
        for metric in spec["metrics"].as_array().into_iter().flatten() {
            facts.metrics.push(
                self.metric(namespace, version, metric, selector.as_deref())
                    .await,
            );
        }
        facts.exporters = Some(
            self.get("/api/v1/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dexporter%2Capp.kubernetes.io%2Fname%3Dframescale")
                .await,
        );
        facts
    }

    /// The version the HPA controller would use: v1beta2 unless only v1beta1 is registered.
    fn custom_metrics_version(facts: &Facts) -> &'static str {
        let registered = |i: usize| facts.api_services[i].1.is_ok();
        if !registered(0) && registered(1) {
            "v1beta1"
        } else {
            "v1beta2"
        }
    }

    /// The scale target's label selector, from its scale subresource.
    async fn selector(&self, facts: &mut Facts, target: &Value) -> Option<String> {
        let (Some(api_version), Some(kind), Some(name)) = (
            target["apiVersion"].as_str(),
            target["kind"].as_str(),
            target["name"].as_str(),
        ) else {
            return None;
        };
        let resource = format!("{}s", kind.to_ascii_lowercase());
        let group = if api_version.contains('/') {
            "apis"
        } else {
            "api"
        };
        let scale = self
            .get(&format!(
                "/{group}/{api_version}/namespaces/{}/{resource}/{name}/scale",
                facts.namespace
            ))
            .await;
        let selector = scale
            .as_ref()
            .ok()
            .and_then(|s| s["status"]["selector"].as_str())
            .map(str::to_owned);
        facts.scale = Some(scale);
        selector
    }

    async fn metric(
        &self,
        namespace: &str,
        version: &str,
        metric: &Value,
        selector: Option<&str>,
    ) -> MetricFacts {
        let kind = metric["type"].as_str().unwrap_or("").to_owned();
        let field = match kind.as_str() {
            "Pods" => "pods",
            "Object" => "object",
            "Resource" => "resource",
            "External" => "external",
            "ContainerResource" => "containerResource",
            _ => "",
        };
        let source = &metric[field];
        let name = source["metric"]["name"]
            .as_str()
            .or_else(|| source["name"].as_str())
            .unwrap_or("")
            .to_owned();
        let target = &source["target"];
        let target = ["averageValue", "value", "averageUtilization"]
            .iter()
            .find_map(|key| match &target[*key] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let answer = if kind == "Pods" {
            let selector = selector.map(|s| format!("?labelSelector={}", encode(s)));
            Some(
                self.get(&format!(
                    "/apis/custom.metrics.k8s.io/{version}/namespaces/{namespace}/pods/%2A/{name}{}",
                    selector.unwrap_or_default()
                ))
                .await,
            )
        } else {
            None
        };
        MetricFacts {
            kind,
            name,
            target,
            answer,
        }
    }
}

fn failure(code: u16, reason: &str, message: &str) -> Failure {
    Failure {
        code,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

/// Percent-encodes a label selector for a query string (everything but unreserved characters).
fn encode(text: &str) -> String {
    const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, QUERY_VALUE).to_string()
}
