//! The adapter in a (fake) cluster, end to end: the adapter process over HTTPS, a fake
//! kube-apiserver on 127.0.0.1 in this test (ConfigMap, TokenReview, SubjectAccessReview, following
//! `docs/reference/custom-metrics-api.md` §7.3–7.4, and the list and watch of pods and
//! Deployments), and `curl` presenting front-proxy and client certificates signed by rcgen CAs,
//! or bearer tokens. Covers delegated authentication and authorization, and selectors and
//! Deployments resolved through the watch.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use framescale_adapter::testing::{Ca, FakeCluster};
use serde_json::{Value, json};
use support::apiserver::{
    Seen, authentication_config_map, client_cert, fake_apiserver, kubeconfig,
};
use support::{Adapter, Exporter, append, assert_hdr_close, cri, serving_certificate, wait_for};

/// `curl` against the adapter: (status, body).
fn curl(adapter: &Adapter, ca: &Path, path: &str, args: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(format!("https://{}{path}", adapter.addr))
        .output()
        .expect("curl is not installed: run ./scripts/test");
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, code) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl: {text} {}", String::from_utf8_lossy(&output.stderr)));
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one table of callers, each with its expected answer"
)]
fn callers_are_authenticated_and_authorized_as_the_aggregator_expects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &[]);
    append(
        &root.join("render_w-0_uid-0/worker/0.log"),
        cri("framescale.frame duration_ms=20 outcome=ok"),
    );
    append(
        &root.join("shop_s-0_uid-1/worker/0.log"),
        cri("framescale.frame duration_ms=20 outcome=ok"),
    );

    let (front, client, stranger) = (
        Ca::new("front-proxy-ca"),
        Ca::new("client-ca"),
        Ca::new("stranger-ca"),
    );
    let config_map = authentication_config_map(&front, &client);
    let seen = Arc::new(Seen::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = FakeCluster::new();
    cluster.apply_pod("render", "w-0", &[("app", "w")]);
    cluster.apply_pod("shop", "s-0", &[("app", "s")]);
    cluster.apply_deployment("render", "w", &json!({"matchLabels": {"app": "w"}}));
    let apiserver = fake_apiserver(&runtime, config_map, seen.clone(), &cluster);
    let kubeconfig = kubeconfig(dir.path(), apiserver);

    let (cert, key) = serving_certificate(dir.path());
    let exporter_url = format!("http://{}/metrics", exporter.addr);
    let adapter = Adapter::start(
        &cert,
        &key,
        &[
            "--exporter",
            &exporter_url,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );

    let pods =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_frame_duration_ms";
    let (proxy_cert, proxy_key) =
        client_cert(&front, dir.path(), "proxy", "front-proxy-client", None);
    let (wrong_name_cert, wrong_name_key) =
        client_cert(&front, dir.path(), "wrong-name", "someone", None);
    let (stranger_cert, stranger_key) = client_cert(
        &stranger,
        dir.path(),
        "stranger",
        "front-proxy-client",
        None,
    );
    let (jane_cert, jane_key) = client_cert(&client, dir.path(), "jane", "jane", Some("sre"));
    let cert_args = |cert: &Path, key: &Path| {
        vec![
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]
    };
    let hpa = [
        "-H",
        "X-Remote-User: system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "-H",
        "X-Remote-Group: system:serviceaccounts",
        "-H",
        "X-Remote-Group: system:authenticated",
    ];
    let with = |mut base: Vec<String>, extra: &[&str]| {
        base.extend(extra.iter().map(|s| (*s).to_owned()));
        base
    };

    // The HPA through the aggregator: front-proxy certificate and X-Remote-* headers.
    let as_hpa = with(cert_args(&proxy_cert, &proxy_key), &hpa);
    let as_hpa: Vec<&str> = as_hpa.iter().map(String::as_str).collect();
    let (code, body) = wait_for(
        "the HPA's answer with the pod",
        Duration::from_secs(20),
        || {
            let (code, body) = curl(&adapter, &cert, pods, &as_hpa);
            (code != 200 || body["items"].as_array().is_some_and(|i| !i.is_empty()))
                .then_some((code, body))
        },
    );
    assert_eq!(code, 200, "{body}");
    let review = seen.access_reviews.lock().unwrap()[0].clone();
    assert_eq!(
        review["user"],
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(
        review["groups"],
        json!(["system:serviceaccounts", "system:authenticated"])
    );
    assert_eq!(
        review["resourceAttributes"],
        json!({"namespace": "render", "verb": "get", "group": "custom.metrics.k8s.io", "version": "v1beta2", "resource": "pods", "subresource": "render_frame_duration_ms", "name": "*"})
    );

    let cases: Vec<(&str, Vec<String>, &str, u16, &str)> = vec![
        (
            "front proxy, name not allowed",
            with(cert_args(&wrong_name_cert, &wrong_name_key), &hpa),
            pods,
            401,
            "not an allowed name",
        ),
        (
            "front proxy, untrusted CA",
            with(cert_args(&stranger_cert, &stranger_key), &hpa),
            pods,
            401,
            "neither",
        ),
        (
            "front proxy, no user header",
            cert_args(&proxy_cert, &proxy_key),
            pods,
            401,
            "no user header",
        ),
        (
            "no credentials",
            vec![],
            pods,
            401,
            "no client certificate and no bearer token",
        ),
        (
            "headers without a front-proxy certificate are ignored",
            hpa.iter().map(|s| (*s).to_owned()).collect(),
            pods,
            401,
            "no client certificate",
        ),
        (
            "bearer token accepted",
            vec!["-H".into(), "Authorization: Bearer jane-token".into()],
            pods,
            200,
            "",
        ),
        (
            "bearer token rejected",
            vec!["-H".into(), "Authorization: Bearer forged".into()],
            pods,
            401,
            "TokenReview",
        ),
        (
            "bearer token of a user who may not",
            vec!["-H".into(), "Authorization: Bearer mallory-token".into()],
            pods,
            403,
            "mallory",
        ),
        (
            "client certificate",
            cert_args(&jane_cert, &jane_key),
            pods,
            200,
            "",
        ),
        (
            "client certificate, namespace not allowed",
            cert_args(&jane_cert, &jane_key),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/render_frame_duration_ms",
            403,
            "jane",
        ),
        ("health is open", vec![], "/livez", 200, ""),
    ];
    for (what, args, path, want_code, want_message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = curl(&adapter, &cert, path, &args);
        assert_eq!(code, want_code, "{what}: {body}");
        if want_code != 200 {
            assert_eq!(body["kind"], "Status", "{what}: {body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(want_message),
                "{what}: {body}"
            );
        }
    }

    // Reviews are kept: asking again as the HPA makes no new SubjectAccessReview, and
    // system:masters (the aggregator's health check) needs none.
    let before = seen.access_reviews.lock().unwrap().len();
    curl(&adapter, &cert, pods, &as_hpa);
    let masters = with(
        cert_args(&proxy_cert, &proxy_key),
        &[
            "-H",
            "X-Remote-User: system:kube-aggregator",
            "-H",
            "X-Remote-Group: system:masters",
        ],
    );
    let masters: Vec<&str> = masters.iter().map(String::as_str).collect();
    assert_eq!(
        curl(
            &adapter,
            &cert,
            "/apis/custom.metrics.k8s.io/v1beta2",
            &masters
        )
        .0,
        200
    );
    assert_eq!(seen.access_reviews.lock().unwrap().len(), before);
    let token_reviews = seen.token_reviews.load(Ordering::Relaxed);
    curl(
        &adapter,
        &cert,
        pods,
        &["-H", "Authorization: Bearer jane-token"],
    );
    assert_eq!(
        seen.token_reviews.load(Ordering::Relaxed),
        token_reviews,
        "the token review was kept"
    );

    // Selectors and Deployments are resolved through the watch of the cluster's pods: a pod that
    // appears, is relabelled or goes away changes the answers without any list per request.
    let by_label = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_frame_duration_ms?labelSelector=app%3Dw";
    let deployment = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/deployments.apps/w/render_frame_duration_ms";
    let pod_names = |path: &str| {
        let (code, body) = curl(&adapter, &cert, path, &as_hpa);
        assert_eq!(code, 200, "{body}");
        let mut names: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["describedObject"]["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(pod_names(by_label), ["w-0"]);
    append(
        &root.join("render_w-1_uid-2/worker/0.log"),
        cri("framescale.frame duration_ms=40 outcome=ok"),
    );
    append(
        &root.join("render_x-0_uid-3/worker/0.log"),
        cri("framescale.frame duration_ms=60 outcome=ok"),
    );
    cluster.apply_pod("render", "w-1", &[("app", "w")]);
    cluster.apply_pod("render", "x-0", &[("app", "x")]);
    wait_for("the new pod", Duration::from_secs(20), || {
        (pod_names(by_label) == ["w-0", "w-1"]).then_some(())
    });
    let (code, body) = curl(&adapter, &cert, deployment, &as_hpa);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["describedObject"]["kind"], "Deployment");
    let millis: f64 = body["items"][0]["value"]
        .as_str()
        .and_then(|v| v.strip_suffix('m'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a milli quantity: {body}"));
    assert_hdr_close(
        millis / 1000.0,
        30.0,
        "the Deployment's mean of w-0 (20) and w-1 (40)",
    );
    cluster.apply_pod("render", "w-1", &[("app", "x")]);
    cluster.delete_pod("render", "w-0");
    wait_for(
        "the relabelled and deleted pods",
        Duration::from_secs(20),
        || {
            (pod_names(by_label).is_empty()
                && pod_names(&by_label.replace("%3Dw", "%3Dx")) == ["w-1", "x-0"])
            .then_some(())
        },
    );
    assert_eq!(
        cluster.requests(framescale_adapter::testing::Kind::Pod).0,
        1,
        "pods were listed once, then watched"
    );
}
