//! Exporter discovery: URLs from EndpointSlices of both versions, and a watch against the fake
//! API server serving the real list/watch JSON, with endpoints added, made not ready and removed.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::testing::{FakeCluster, Kind};

#[test]
fn ready_endpoints_of_both_versions_become_urls() {
    // v1, as the EndpointSlice controller writes it (conditions.ready), an IPv6 slice, and a
    // v1beta1 one (1.17-1.20: `topology` instead of `nodeName`, same fields otherwise).
    let v1 = json!({
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.1.7"], "conditions": {"ready": false, "terminating": true}},
            {"addresses": ["10.244.2.9"], "conditions": {}},
        ],
        "ports": [{"name": "admin", "port": 9999}, {"name": "metrics", "port": 9477, "protocol": "TCP"}],
    });
    assert_eq!(
        endpoint_urls(&v1, Some("metrics")),
        [
            "http://10.244.0.5:9477/metrics",
            "http://10.244.2.9:9477/metrics"
        ],
        "not ready is left out; unknown readiness is ready"
    );
    assert_eq!(endpoint_urls(&v1, Some("nope")), Vec::<String>::new());
    let v6 = json!({"addressType": "IPv6", "endpoints": [{"addresses": ["fd00::5"]}], "ports": [{"port": 9477}]});
    assert_eq!(endpoint_urls(&v6, None), ["http://[fd00::5]:9477/metrics"]);
    let v1beta1 = json!({
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "topology": {"kubernetes.io/hostname": "n3"}}],
        "ports": [{"name": "metrics", "port": 9477}],
    });
    assert_eq!(
        endpoint_urls(&v1beta1, Some("metrics")),
        ["http://10.0.0.3:9477/metrics"]
    );
    assert!(endpoint_urls(&json!({}), None).is_empty());
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_exporters_follow_their_services_endpoint_slices() {
    let cluster = FakeCluster::new();
    cluster.apply_endpoint_slice(
        "framescale",
        "framescale-exporter-abc",
        "framescale-exporter",
        &[("10.244.0.5", true), ("10.244.0.6", true)],
        9477,
    );
    // Another Service's slice in the same namespace, and one of the same name elsewhere.
    cluster.apply_endpoint_slice(
        "framescale",
        "other-xyz",
        "other",
        &[("10.244.0.9", true)],
        80,
    );
    cluster.apply_endpoint_slice(
        "elsewhere",
        "framescale-exporter-def",
        "framescale-exporter",
        &[("10.244.9.9", true)],
        9477,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, cluster.router()).into_future());
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let targets = ExporterTargets::Service {
        namespace: "framescale".into(),
        name: "framescale-exporter".into(),
        port_name: Some("metrics".into()),
    };
    let exporters = Exporters::start(&targets, Some(&client)).await.unwrap();
    eventually("the first list", || exporters.is_synced()).await;
    assert_eq!(
        exporters.urls(),
        [
            "http://10.244.0.5:9477/metrics",
            "http://10.244.0.6:9477/metrics"
        ]
    );

    // A node drained (its exporter not ready), a new node, then the slice replaced by two.
    cluster.apply_endpoint_slice(
        "framescale",
        "framescale-exporter-abc",
        "framescale-exporter",
        &[
            ("10.244.0.5", false),
            ("10.244.0.6", true),
            ("10.244.0.7", true),
        ],
        9477,
    );
    eventually("the drained and the new exporter", || {
        exporters.urls()
            == [
                "http://10.244.0.6:9477/metrics",
                "http://10.244.0.7:9477/metrics",
            ]
    })
    .await;
    cluster.apply_endpoint_slice(
        "framescale",
        "framescale-exporter-ghi",
        "framescale-exporter",
        &[("10.244.1.1", true)],
        9477,
    );
    cluster.delete_endpoint_slice("framescale", "framescale-exporter-abc");
    eventually("the removed slice", || {
        exporters.urls() == ["http://10.244.1.1:9477/metrics"]
    })
    .await;
    assert_eq!(
        cluster.requests(Kind::EndpointSlice),
        (1, 1),
        "one list, one watch"
    );
}
