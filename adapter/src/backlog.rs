//! The render queue's backlog as an Object metric on the render Deployment: the frames waiting
//! plus those in flight, read from the queue ([`framescale_queue`]) when asked — so an HPA
//! with `minReplicas: 0` wakes the Deployment from zero replicas, which no Pods metric can
//! (zero pods have no values).
//!
//! Served only as `namespaces/{ns}/deployments.apps/{deployment}/{metric}` for the one
//! Deployment it was configured for; any other object is 404. When the queue cannot be read the
//! answer is 503 with the reason — never 0, which would let the HPA scale the workers to zero
//! with frames still waiting.

use std::sync::Arc;

use framescale_core::quantity;
use framescale_queue::Queue;

use crate::request::{MetricRequest, Target};
use crate::source::SourceError;
use crate::wire::{DescribedObject, MetricValue};

/// The metric's name when none is given.
pub const DEFAULT_NAME: &str = "render_backlog_frames";

/// The backlog metric: its name, the Deployment it describes and the queue it reads.
#[derive(Debug, Clone)]
pub struct BacklogMetric {
    /// The metric's name.
    pub name: String,
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// The queue.
    pub queue: Arc<Queue>,
}

impl BacklogMetric {
    /// Whether `request` (for this metric) asks for the one Deployment it describes, with no
    /// metric selector.
    #[must_use]
    pub fn describes(&self, request: &MetricRequest) -> bool {
        request.metric_selector.is_none()
            && matches!(&request.target, Target::Object { namespace, resource, name }
                if resource == "deployments.apps" && *namespace == self.namespace && *name == self.deployment)
    }

    /// The backlog now, as the value of `metric` on the Deployment, stamped `now_millis`; when
    /// the queue cannot be read, why (a 503, never a 0).
    pub async fn value(&self, metric: &str, now_millis: u64) -> Result<MetricValue, SourceError> {
        let backlog = self
            .queue
            .backlog()
            .await
            .map_err(|error| SourceError::Queue(error.to_string()))?;
        let quantity = quantity::format(backlog.frames as f64)
            .map_err(|e| SourceError::Queue(format!("the backlog is no quantity: {e}")))?;
        Ok(MetricValue {
            object: DescribedObject {
                kind: "Deployment",
                api_version: "apps/v1",
                namespace: Some(self.namespace.clone()),
                name: self.deployment.clone(),
            },
            metric: metric.to_owned(),
            selector: None,
            timestamp_millis: now_millis,
            window_seconds: None,
            quantity,
        })
    }
}
