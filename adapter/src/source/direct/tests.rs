//! The direct backend: what it takes from an exposition, holds, and scraping real HTTP
//! exporters on 127.0.0.1 (a good one, hung ones, a refused port).

use std::fmt::Write as _;
use std::time::Instant;

use framescale_core::score::Holds;

use super::*;
use crate::series::parse_exposition;
use crate::telemetry::Telemetry;

const EXPOSITION: &str = r#"
framescale_frame_duration_seconds{namespace="render",pod="a",container="blender",quantile="0.95"} 0.064
framescale_frame_duration_seconds{namespace="render",pod="a",container="sidecar",quantile="0.95"} 0.010
framescale_frame_duration_seconds{namespace="render",pod="a",container="blender",quantile="0.5"} 0.020
framescale_frame_duration_seconds{namespace="render",pod="b",container="blender",quantile="0.95"} 0.016
framescale_frame_latency_seconds{namespace="render",pod="a",container="blender",measure="queue_and_render",quantile="0.95"} 0.2
framescale_frame_latency_seconds{namespace="render",pod="b",container="blender",measure="render",quantile="0.95"} 0.016
framescale_gpu_duty_cycle_ratio{namespace="render",pod="a",container="blender",device="gpu",uuid="GPU-1"} 0.91
framescale_frame_duration_seconds{namespace="other",pod="c",container="x",quantile="0.95"} 0.5
framescale_exporter_window_seconds 20
framescale_exporter_device_poll_interval_seconds 0.5
"#;

#[test]
fn ingest_picks_aggregates_and_scales() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    source.ingest(
        "http://a/metrics",
        &parse_exposition(EXPOSITION).unwrap(),
        1_000,
    );
    let render = source.snapshot("render");
    assert_eq!(render.len(), 2);
    assert_eq!(
        render["a"].p95_ms,
        Some(Reading {
            value: 64.0,
            at_millis: 1_000,
            window: Some(Duration::from_secs(20)),
        }),
        "the window is the exporter's"
    );
    assert_eq!(
        render["a"].duty_pct.unwrap().window,
        Some(Duration::from_millis(500))
    );
    assert!((render["a"].duty_pct.unwrap().value - 91.0).abs() < 1e-9);
    assert!((render["a"].latency_ms.unwrap().value - 200.0).abs() < 1e-9);
    assert!((render["b"].latency_ms.unwrap().value - 16.0).abs() < 1e-9);
    assert_eq!(render["b"].duty_pct, None, "missing stays missing");
    assert_eq!(source.snapshot("other").len(), 1);
}

#[test]
fn holds_build_up_over_scrapes() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let samples = parse_exposition(EXPOSITION).unwrap();
    for at in (0..=30_000).step_by(5_000) {
        source.ingest("http://a/metrics", &samples, at);
    }
    let holds = source.snapshot("render")["a"].holds;
    assert_eq!(
        holds,
        Holds {
            frame_over: true,
            gpu_over: true,
            both_over: true
        }
    );
    assert_eq!(source.snapshot("render")["b"].holds, Holds::default());
}

#[test]
fn pods_without_fresh_values_are_forgotten() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    source.ingest(
        "http://a/metrics",
        &parse_exposition(EXPOSITION).unwrap(),
        1_000,
    );
    source.forget_older_than(2_000);
    assert!(source.snapshot("render").is_empty());
}

/// Found on a real cluster: a worker's window emptied of frames after the load, its exporter
/// stopped serving the P95, and the adapter kept serving the last one for `max_age` (45 s) while
/// its hold tracker saw it missing. An exporter's answer is the truth about its pods.
#[test]
fn what_an_exporter_stops_serving_is_missing_at_once() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let (a, other) = ("http://a/metrics", "http://other/metrics");
    source.ingest(a, &parse_exposition(EXPOSITION).unwrap(), 1_000);
    source.ingest(
        other,
        &parse_exposition(
            r#"framescale_frame_duration_seconds{namespace="render",pod="z",container="x",quantile="0.95"} 0.02"#,
        )
        .unwrap(),
        1_000,
    );
    let frames_gone = EXPOSITION
        .lines()
        .filter(|l| !(l.contains(r#"pod="a""#) && l.starts_with("framescale_frame_")))
        .filter(|l| !l.contains(r#"pod="b""#))
        .collect::<Vec<_>>()
        .join("\n");
    source.ingest(a, &parse_exposition(&frames_gone).unwrap(), 2_000);
    let render = source.snapshot("render");
    assert_eq!(
        render["a"].p95_ms, None,
        "no longer served: missing, not the last value"
    );
    assert_eq!(render["a"].duty_pct.unwrap().at_millis, 2_000);
    assert!(
        !render.contains_key("b"),
        "a pod its exporter no longer serves is gone"
    );
    assert_eq!(
        render["z"].p95_ms.unwrap().at_millis,
        1_000,
        "another exporter's pods are its own"
    );
}

#[test]
fn a_window_the_exporter_does_not_state_is_unknown_unless_the_file_says() {
    let without = EXPOSITION
        .lines()
        .filter(|l| !l.starts_with("framescale_exporter_"))
        .collect::<Vec<_>>()
        .join("\n");
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    source.ingest(
        "http://a/metrics",
        &parse_exposition(&without).unwrap(),
        1_000,
    );
    assert_eq!(source.snapshot("render")["a"].p95_ms.unwrap().window, None);

    let config = MetricsConfig::parse("metrics: { frame: { window: 30s } }").unwrap();
    let source = DirectSource::new(Arc::new(config));
    source.ingest(
        "http://a/metrics",
        &parse_exposition(EXPOSITION).unwrap(),
        1_000,
    );
    assert_eq!(
        source.snapshot("render")["a"].p95_ms.unwrap().window,
        Some(Duration::from_secs(30)),
        "the metrics file wins over the exporter"
    );
}

/// Serves `body` as an exporter's /metrics on a port of 127.0.0.1.
async fn exporter(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { body }));
    tokio::spawn(axum::serve(listener, app).into_future());
    url
}

/// A port that accepts connections and never answers.
async fn hung() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

fn client() -> reqwest::Client {
    let tls = crate::tls::client_config(rustls::RootCertStore::empty()).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

#[tokio::test]
async fn exporters_are_scraped_at_once_and_a_hung_one_delays_no_other() {
    let good = exporter(EXPOSITION).await;
    let (first_hung, _a) = hung().await;
    let (second_hung, _b) = hung().await;
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", listener.local_addr().unwrap())
    };
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let targets = [first_hung.clone(), good, second_hung, refused.clone()];
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    source.scrape_round(&client(), &targets, timeout).await;
    let took = started.elapsed();
    // One after another, the two hung exporters alone would take two timeouts.
    assert!(took < timeout.mul_f64(1.9), "{took:?}");
    assert_eq!(
        source.snapshot("render").len(),
        2,
        "the good exporter's pods"
    );
    let Health {
        rounds,
        targets,
        failures,
    } = source.health();
    assert_eq!((rounds, targets), (1, 4));
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with(&first_hung) && f.contains("no answer within 1s")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with(&refused) && f.contains("refused")),
        "{failures:?}"
    );
}

#[tokio::test]
async fn an_exporter_that_recovers_leaves_the_failures() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/metrics");
    source
        .scrape_round(
            &client(),
            std::slice::from_ref(&url),
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(source.health().failures.len(), 1);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { EXPOSITION }));
    tokio::spawn(axum::serve(listener, app).into_future());
    source
        .scrape_round(&client(), &[url], Duration::from_secs(1))
        .await;
    assert_eq!(source.health().failures, Vec::<String>::new());
    assert_eq!(source.health().rounds, 2);
    assert!(!source.snapshot("render").is_empty());
}

#[tokio::test]
async fn long_expositions_are_read_in_chunks_and_bad_lines_name_their_number() {
    // Some 40,000 lines of other series around the selected ones, as a big node serves.
    let mut text = String::new();
    for i in 0..20_000 {
        let _ = writeln!(
            text,
            "framescale_exporter_lines_read_total{{x=\"{i}\"}} {i}"
        );
    }
    text.push_str(EXPOSITION);
    for i in 0..20_000 {
        let _ = writeln!(text, "# HELP other_{i} a comment");
    }
    let big = exporter(Box::leak(text.into_boxed_str())).await;
    let bad =
        exporter("# HELP a\nframescale_gpu_duty_cycle_ratio{namespace=\"a\",pod=\"b\"} zero\n")
            .await;
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    source
        .scrape_round(&client(), &[big, bad.clone()], Duration::from_secs(5))
        .await;
    let render = source.snapshot("render");
    assert!((render["a"].p95_ms.unwrap().value - 64.0).abs() < 1e-9);
    let failures = source.health().failures;
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with(&bad) && failures[0].contains("line 2"),
        "{failures:?}"
    );
}

/// The DCGM metrics files of docs/examples, as an operator would use them, over an exposition
/// in dcgm-exporter's shape: SM activity tells the one-block load from the busy GPU, where
/// utilization.gpu says both are at 100 %.
#[test]
fn the_dcgm_examples_read_dcgm_exporter_series() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exposition =
        std::fs::read_to_string(root.join("fixtures/dcgm-exporter/metrics.txt")).unwrap();
    let samples = parse_exposition(&exposition).unwrap();
    let duty = |file: &str| {
        let config = MetricsConfig::load(&root.join("docs/examples").join(file)).unwrap();
        let source = DirectSource::new(Arc::new(config));
        source.ingest("http://a/metrics", &samples, 1_000);
        let render = source.snapshot("render");
        assert_eq!(render.len(), 2, "the unassigned GPU has no pod: {render:?}");
        let reading = |pod: &str| render[pod].duty_pct.unwrap();
        assert_eq!(reading("blender-0").window, Some(Duration::from_secs(1)));
        (reading("blender-0").value, reading("blender-1").value)
    };
    let (one_block, third) = duty("metrics-dcgm-sm-active.yaml");
    assert!((one_block - 0.7576).abs() < 1e-9, "{one_block}");
    assert!((third - 33.1).abs() < 1e-9, "{third}");
    assert_eq!(duty("metrics-dcgm-gpu-util.yaml"), (100.0, 35.0));
}

/// Found as a user would: frames held over target, the exporter killed, and ~30 s later the
/// adapter served the ratio for every pod although nothing had been observed since. A hold is
/// made of observations: a dead exporter neither grows nor completes it, and when it answers
/// again the hold starts over.
#[tokio::test]
async fn a_dead_exporter_completes_no_hold() {
    let mut config = MetricsConfig::default();
    config.score.frame_bound_hold = Duration::from_secs(1);
    config.score.gpu_bound_hold = Duration::from_secs(1);
    config.score.both_hold = Duration::from_secs(1);
    let source = DirectSource::new(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/metrics");
    let serve = |listener| {
        let app =
            axum::Router::new().route("/metrics", axum::routing::get(|| async { EXPOSITION }));
        tokio::spawn(axum::serve(listener, app).into_future())
    };
    let (client, timeout) = (client(), Duration::from_millis(500));
    let round = || source.scrape_round(&client, std::slice::from_ref(&url), timeout);
    let held = || source.snapshot("render")["a"].holds;
    let server = serve(listener);
    round().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    round().await;
    assert_eq!(held(), Holds::default(), "0.6 s of observations");

    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    round().await;
    assert_eq!(source.health().failures.len(), 1);
    assert_eq!(
        held(),
        Holds::default(),
        "1.5 s after the first observation, but the last one was at 0.6 s"
    );

    let server = serve(tokio::net::TcpListener::bind(addr).await.unwrap());
    round().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    round().await;
    assert_eq!(held(), Holds::default(), "the hold started over");
    tokio::time::sleep(Duration::from_millis(500)).await;
    round().await;
    assert_eq!(
        held(),
        Holds {
            frame_over: true,
            gpu_over: true,
            both_over: true
        },
        "1.1 s of fresh observations"
    );
    server.abort();
}

/// The review's reproduction: frames from framescale's exporter, GPU from dcgm-exporter, both
/// scraped (docs/examples/metrics-dcgm-gpu-util.yaml). Each exporter's half of a pod must not
/// wipe out the other's: blender-0 (latency 300 ms, GPU 100 %) is over target on both, and
/// stays so whichever exporter answered last.
#[test]
fn frames_and_gpu_from_two_exporters_make_one_pod() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config =
        MetricsConfig::load(&root.join("docs/examples/metrics-dcgm-gpu-util.yaml")).unwrap();
    config.score.both_hold = Duration::from_secs(10);
    let source = DirectSource::new(Arc::new(config));
    let dcgm = parse_exposition(
        &std::fs::read_to_string(root.join("fixtures/dcgm-exporter/metrics.txt")).unwrap(),
    )
    .unwrap();
    let frames = parse_exposition(
        r#"
framescale_frame_duration_seconds{namespace="render",pod="blender-0",container="blender",quantile="0.95"} 0.06
framescale_frame_latency_seconds{namespace="render",pod="blender-0",container="blender",measure="queue_and_render",quantile="0.95"} 0.3
framescale_exporter_window_seconds 60
"#,
    )
    .unwrap();
    for at in (0..=20_000).step_by(5_000) {
        source.ingest("http://framescale-exporter/metrics", &frames, at);
        source.ingest("http://dcgm-exporter/metrics", &dcgm, at + 100);
        let pod = source.snapshot("render")["blender-0"];
        assert!(
            (pod.latency_ms.unwrap().value - 300.0).abs() < 1e-9,
            "{at}: {pod:?}"
        );
        assert!((pod.p95_ms.unwrap().value - 60.0).abs() < 1e-9);
        assert!(
            (pod.duty_pct.unwrap().value - 100.0).abs() < 1e-9,
            "{at}: {pod:?}"
        );
        assert_eq!(pod.duty_pct.unwrap().window, Some(Duration::from_secs(1)));
        assert_eq!(pod.latency_ms.unwrap().window, Some(Duration::from_mins(1)));
    }
    let holds = source.snapshot("render")["blender-0"].holds;
    assert!(holds.both_over, "20 s over target on both: {holds:?}");
    // dcgm-exporter stops serving the pod: its GPU is missing, its frames are not.
    source.ingest("http://dcgm-exporter/metrics", &[], 25_000);
    let pod = source.snapshot("render")["blender-0"];
    assert_eq!(pod.duty_pct, None);
    assert!(pod.latency_ms.is_some());
}

/// A pod recreated on another node under the same name (a StatefulSet's): the old node's
/// exporter still serves its last window for a grace period. The exporter that began serving
/// the pod last is where it runs now; when the old one stops, nothing of it is left.
#[test]
fn a_pod_that_moved_nodes_is_read_from_its_new_exporter() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let p95 = |ms: f64| {
        parse_exposition(&format!(
            r#"framescale_frame_latency_seconds{{namespace="render",pod="w-0",container="worker",measure="queue_and_render",quantile="0.95"}} {}"#,
            ms / 1000.0
        ))
        .unwrap()
    };
    source.ingest("http://old-node/metrics", &p95(400.0), 1_000);
    source.ingest("http://old-node/metrics", &p95(400.0), 6_000);
    source.ingest("http://new-node/metrics", &p95(50.0), 6_000);
    let latency = |source: &DirectSource| source.snapshot("render")["w-0"].latency_ms.unwrap();
    assert!(
        (latency(&source).value - 50.0).abs() < 1e-9,
        "as fresh: the newer server wins"
    );
    source.ingest("http://old-node/metrics", &p95(400.0), 11_000);
    assert!(
        (latency(&source).value - 400.0).abs() < 1e-9,
        "fresher wins"
    );
    source.ingest("http://new-node/metrics", &p95(60.0), 11_000);
    assert!((latency(&source).value - 60.0).abs() < 1e-9);
    source.ingest("http://old-node/metrics", &[], 16_000);
    source.ingest("http://new-node/metrics", &p95(70.0), 16_000);
    assert!((latency(&source).value - 70.0).abs() < 1e-9);
    source.ingest("http://new-node/metrics", &[], 21_000);
    assert!(
        source.snapshot("render").is_empty(),
        "no exporter serves it"
    );
}

/// An exposition's own sample timestamp is when the value was measured: an hour-old sample
/// is an hour old (and then not served, past `max_age`), not as fresh as the scrape.
#[test]
fn a_samples_own_timestamp_is_its_time() {
    let source = DirectSource::new(Arc::new(MetricsConfig::default()));
    let now = 1_800_000_000_000_u64;
    let hour_ago = now - 3_600_000;
    let samples = parse_exposition(&format!(
        r#"framescale_frame_latency_seconds{{namespace="render",pod="old",container="c",measure="queue_and_render",quantile="0.95"}} 0.05 {hour_ago}
framescale_frame_latency_seconds{{namespace="render",pod="new",container="c",measure="queue_and_render",quantile="0.95"}} 0.05
framescale_frame_latency_seconds{{namespace="render",pod="ahead",container="c",measure="queue_and_render",quantile="0.95"}} 0.05 {}
"#,
        now + 60_000
    ))
    .unwrap();
    source.ingest("http://a/metrics", &samples, now);
    let render = source.snapshot("render");
    assert_eq!(render["old"].latency_ms.unwrap().at_millis, hour_ago);
    assert_eq!(render["new"].latency_ms.unwrap().at_millis, now);
    assert_eq!(
        render["ahead"].latency_ms.unwrap().at_millis,
        now,
        "a clock ahead is taken as the scrape's time"
    );
}

/// Values no measurement gives are refused as read, and counted: a negative time would score
/// 0, 1e300 s overflows a Deployment's mean (its quantity cannot be written: a 404).
#[test]
fn out_of_range_values_are_refused_and_counted() {
    let telemetry = Arc::new(Telemetry::default());
    let source =
        DirectSource::new(Arc::new(MetricsConfig::default())).with_telemetry(telemetry.clone());
    let samples = parse_exposition(
        r#"
framescale_frame_latency_seconds{namespace="render",pod="huge",container="c",measure="queue_and_render",quantile="0.95"} 1e300
framescale_frame_latency_seconds{namespace="render",pod="negative",container="c",measure="queue_and_render",quantile="0.95"} -0.01
framescale_frame_latency_seconds{namespace="render",pod="fine",container="c",measure="queue_and_render",quantile="0.95"} 3600
framescale_frame_latency_seconds{namespace="render",pod="empty",container="c",measure="queue_and_render",quantile="0.95"} NaN
framescale_gpu_duty_cycle_ratio{namespace="render",pod="fine",container="c",device="gpu",uuid="GPU-1"} 1.5
"#,
    )
    .unwrap();
    source.ingest("http://a/metrics", &samples, 1_000);
    let render = source.snapshot("render");
    assert_eq!(render.keys().collect::<Vec<_>>(), ["fine"]);
    assert!(
        (render["fine"].latency_ms.unwrap().value - 3_600_000.0).abs() < 1e-6,
        "a refusal's hour is valid"
    );
    assert_eq!(render["fine"].duty_pct, None, "150 % is no duty");
    assert!(
        telemetry
            .render()
            .contains("framescale_adapter_values_refused_total 3"),
        "NaN (an empty summary) is missing, not refused:\n{}",
        telemetry.render()
    );
}
