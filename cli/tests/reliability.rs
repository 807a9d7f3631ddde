//! Faults and load, by hand (`scripts/reliability`; each test is `#[ignore]`d, so CI does not
//! run them): real processes on 127.0.0.1 — the release build when run by the script — and what
//! happened, printed as the tables of `docs/reliability.md`.
//!
//! - `soak`: the adapter over HTTPS with delegated auth on (front-proxy certificates and
//!   `X-Remote-*` headers, as the aggregator sends them; a fake kube-apiserver), at a fixed rate
//!   (`FRAMESCALE_SOAK_RATE`, default 2,000/s) for `FRAMESCALE_SOAK_SECONDS` (default 600):
//!   latency from each request's scheduled time (no coordinated omission) and RSS over time.
//! - `prometheus_faults`: Prometheus stopped, slow past the timeout, and answering 500, through
//!   a fault proxy: the adapter answers 503 with a Status, recovers by itself, never serves 0.
//! - `dead_and_hung_exporters`: one exporter killed, one that hangs mid-answer: the others' pods
//!   are answered on time, the dead one is logged once, its pods go missing after `max_age`.
//! - `failover`: two adapters behind one address (a round-robin TCP proxy that skips a backend
//!   it cannot connect to), one killed under load: errors and time until every request succeeds.
//! - `certificate_rotation`: the serving certificate replaced under load: failed requests, and
//!   when new connections get the new one.
//! - `exporter_pressure`: 1,000 pods writing 50 MB/s of log lines in total: the exporter's CPU
//!   and RSS, `/metrics` latency, and whether it counted every frame.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framescale_adapter::testing::{Ca, FakeCluster};
use hdrhistogram::Histogram;
use serde_json::Value;
use support::apiserver::{
    Seen, authentication_config_map, client_cert, fake_apiserver, kubeconfig,
};
use support::{
    Adapter, Exporter, Prometheus, cpu_seconds, now_millis, rss_kib, serving_certificate, wait_for,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SCORE: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_scaling_score";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pushes 30 frames of 40 ms to each of `pods` pods `w-<i>` of namespace `render`.
fn push_pods(exporter: &Exporter, pods: usize, prefix: &str) {
    let body: String = (0..pods)
        .flat_map(|i| {
            (0..30).map(move |_| {
                format!(
                    "{{\"namespace\":\"render\",\"pod\":\"{prefix}-{i}\",\"container\":\"worker\",\"duration_ms\":40,\"outcome\":\"ok\"}}\n"
                )
            })
        })
        .collect();
    for chunk in body.lines().collect::<Vec<_>>().chunks(5_000) {
        let (status, text) = exporter.post("/v1/frames", (chunk.join("\n") + "\n").as_bytes());
        assert_eq!(status, 200, "{text}");
    }
}

/// A temporary directory and an exporter over a log root in it, with `pods` pods `w-<i>`
/// pushed.
fn exporter_with_pods(pods: usize) -> (tempfile::TempDir, Exporter) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &["--push"]);
    push_pods(&exporter, pods, "w");
    (dir, exporter)
}

/// A reqwest client trusting `roots` (PEM files), presenting `identity` (cert, key) if given.
fn https_client(roots: &[&Path], identity: Option<(&Path, &Path)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        for cert in CertificateDer::pem_file_iter(root).unwrap() {
            store.add(cert.unwrap()).unwrap();
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What a load run saw, per interval of `step`.
#[derive(Default)]
struct LoadReport {
    steps: Vec<Step>,
}

struct Step {
    at: Duration,
    latency: Histogram<u64>,
    errors: u64,
    rss_kib: Option<u64>,
}

impl LoadReport {
    fn print(&self, title: &str) {
        println!(
            "\n{title}\n\n| t (s) | requests | errors | p50 (ms) | p99 (ms) | max (ms) | RSS (MiB) |\n|---|---|---|---|---|---|---|"
        );
        for s in &self.steps {
            let ms = |q: f64| s.latency.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                s.at.as_secs(),
                s.latency.len(),
                s.errors,
                ms(0.5),
                ms(0.99),
                s.latency.max() as f64 / 1000.0,
                s.rss_kib
                    .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
            );
        }
        let errors: u64 = self.steps.iter().map(|s| s.errors).sum();
        let total: u64 = self.steps.iter().map(|s| s.latency.len()).sum();
        println!("\n{total} answered, {errors} failed");
    }

    fn errors(&self) -> u64 {
        self.steps.iter().map(|s| s.errors).sum()
    }
}

/// Sends `rate` requests per second to `url` for `seconds`, from each request's scheduled
/// time; `during(elapsed)` runs every 100 ms (to inject a fault); RSS of `pid` each step.
#[allow(clippy::too_many_arguments, reason = "one load run, told in full")]
fn load(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    rate: u64,
    seconds: u64,
    step: Duration,
    pid: Option<u32>,
    mut during: impl FnMut(Duration),
) -> LoadReport {
    let started = Instant::now();
    let bucket =
        move |at: Instant| (at.duration_since(started).as_millis() / step.as_millis()) as usize;
    let buckets = (seconds * 1000 / step.as_millis() as u64) as usize + 1;
    let latency: Arc<Vec<Mutex<Histogram<u64>>>> = Arc::new(
        (0..buckets)
            .map(|_| Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()))
            .collect(),
    );
    let errors: Arc<Vec<AtomicU64>> = Arc::new((0..buckets).map(|_| AtomicU64::new(0)).collect());
    let workers = 64_u64;
    let interval = Duration::from_secs_f64(workers as f64 / rate as f64);
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url, latency, errors) = (
            client.clone(),
            url.to_owned(),
            latency.clone(),
            errors.clone(),
        );
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tasks.push(runtime.spawn(async move {
            let mut next = started + interval.mul_f64(w as f64 / workers as f64);
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let mut request = client.get(&url);
                for (k, v) in &headers {
                    request = request.header(k, v);
                }
                let ok = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                let b = bucket(next).min(buckets - 1);
                if ok {
                    let took = next.elapsed().as_micros().max(1) as u64;
                    latency[b].lock().unwrap().saturating_record(took);
                } else {
                    errors[b].fetch_add(1, Ordering::Relaxed);
                }
                next += interval;
            }
        }));
    }
    let mut rss = vec![None; buckets];
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        during(started.elapsed());
        if let Some(pid) = pid {
            rss[bucket(Instant::now()).min(buckets - 1)] = Some(rss_kib(pid));
        }
    }
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    let steps = (0..buckets - 1)
        .map(|b| Step {
            at: step * (b as u32 + 1),
            latency: latency[b].lock().unwrap().clone(),
            errors: errors[b].load(Ordering::Relaxed),
            rss_kib: rss[b],
        })
        .collect();
    LoadReport { steps }
}

#[test]
#[ignore = "by hand: scripts/reliability"]
fn soak() {
    let (rate, seconds) = (
        env_or("FRAMESCALE_SOAK_RATE", 2_000),
        env_or("FRAMESCALE_SOAK_SECONDS", 600),
    );
    let (dir, exporter) = exporter_with_pods(100);
    let (front, client) = (Ca::new("front-proxy-ca"), Ca::new("client-ca"));
    let config_map = authentication_config_map(&front, &client);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = FakeCluster::new();
    for i in 0..100 {
        cluster.apply_pod("render", &format!("w-{i}"), &[("app", "w")]);
    }
    let apiserver = fake_apiserver(&runtime, config_map, Arc::new(Seen::default()), &cluster);
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
    let (proxy_cert, proxy_key) =
        client_cert(&front, dir.path(), "proxy", "front-proxy-client", None);
    let https = https_client(&[&cert], Some((&proxy_cert, &proxy_key)));
    let url = format!("https://{}{SCORE}?labelSelector=app%3Dw", adapter.addr);
    let headers = [
        (
            "X-Remote-User",
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        ),
        ("X-Remote-Group", "system:authenticated"),
    ];
    // The answer is the one the HPA would get: 100 pods.
    let body: Value = runtime.block_on(async {
        let mut request = https.get(&url);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        serde_json::from_slice(&request.send().await.unwrap().bytes().await.unwrap()).unwrap()
    });
    assert_eq!(body["items"].as_array().map(Vec::len), Some(100), "{body}");
    let started_rss = rss_kib(adapter.pid());
    let cpu = cpu_seconds(adapter.pid());
    let report = load(
        &runtime,
        &https,
        &url,
        &headers,
        rate,
        seconds,
        Duration::from_secs((seconds / 20).max(1)),
        Some(adapter.pid()),
        |_| {},
    );
    let cpu = cpu_seconds(adapter.pid()) - cpu;
    report.print(&format!(
        "Soak: {rate} requests/s for {seconds} s, HTTPS, front-proxy auth, 100 pods by labelSelector"
    ));
    println!(
        "adapter RSS {:.1} MiB at the start, {:.1} MiB at the end; CPU {:.0} % of a core",
        started_rss as f64 / 1024.0,
        rss_kib(adapter.pid()) as f64 / 1024.0,
        cpu * 100.0 / seconds as f64
    );
}

/// A TCP proxy whose behaviour a test switches: pass, refuse, slow, or answer 500.
struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

const PASS: u8 = 0;
const REFUSE: u8 = 1;
const SLOW: u8 = 2;
const ERROR: u8 = 3;

impl FaultProxy {
    fn start(runtime: &tokio::runtime::Runtime, upstream: Vec<SocketAddr>) -> FaultProxy {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let next = Arc::new(AtomicU64::new(0));
        let shared = mode.clone();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (mode, upstream, next) = (shared.clone(), upstream.clone(), next.clone());
                tokio::spawn(async move {
                    match mode.load(Ordering::Relaxed) {
                        REFUSE => return,
                        SLOW => tokio::time::sleep(Duration::from_secs(3)).await,
                        ERROR => {
                            let mut buffer = [0; 4096];
                            let _ = client.read(&mut buffer).await;
                            let _ = client
                                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\nboom")
                                .await;
                            return;
                        }
                        _ => {}
                    }
                    // Round robin over the upstreams, skipping one that refuses.
                    let first = next.fetch_add(1, Ordering::Relaxed) as usize;
                    for i in 0..upstream.len() {
                        let target = upstream[(first + i) % upstream.len()];
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            // A fault cuts the connections open through the proxy too (clients
                            // keep them alive), checked every 50 ms.
                            let fault = async {
                                while mode.load(Ordering::Relaxed) == PASS {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                () = fault => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy { addr, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }
}

/// GET over plain reqwest, trusting `ca`: (status, body).
fn fetch(runtime: &tokio::runtime::Runtime, client: &reqwest::Client, url: &str) -> (u16, String) {
    runtime.block_on(async {
        match client.get(url).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
}

#[test]
#[ignore = "by hand: scripts/reliability"]
fn prometheus_faults() {
    let (dir, exporter) = exporter_with_pods(20);
    let prometheus = Prometheus::start(&[exporter.addr]);
    wait_for("pods in Prometheus", Duration::from_secs(30), || {
        (prometheus
            .query(r#"framescale_frame_duration_seconds{quantile="0.95"}"#)
            .len()
            == 20)
            .then_some(())
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = FaultProxy::start(&runtime, vec![prometheus.addr]);
    let (cert, key) = serving_certificate(dir.path());
    let adapter = Adapter::start(
        &cert,
        &key,
        &[
            "--insecure-disable-auth",
            "--prometheus-url",
            &format!("http://{}", proxy.addr),
            "--prometheus-timeout",
            "1s",
        ],
    );
    let https = https_client(&[&cert], None);
    let url = format!("https://{}{SCORE}", adapter.addr);
    println!(
        "\nPrometheus faults (query timeout 1 s, cache 2 s; 200 ms between requests)\n\n| phase | requests | 200 | 503 with a Status | other | zero values | first 200 after (s) | slowest answer (s) |\n|---|---|---|---|---|---|---|---|"
    );
    for (phase, mode) in [
        ("healthy", PASS),
        ("stopped (connections refused)", REFUSE),
        ("back", PASS),
        ("slow (3 s, past the timeout)", SLOW),
        ("back", PASS),
        ("answering 500", ERROR),
        ("back", PASS),
    ] {
        proxy.set(mode);
        let started = Instant::now();
        let (mut total, mut ok, mut status, mut other, mut zeros) = (0, 0, 0, 0, 0);
        let (mut first_ok, mut slowest) = (None, Duration::ZERO);
        while started.elapsed() < Duration::from_secs(10) {
            let sent = Instant::now();
            let (code, body) = fetch(&runtime, &https, &url);
            slowest = slowest.max(sent.elapsed());
            total += 1;
            match code {
                200 => {
                    ok += 1;
                    first_ok.get_or_insert(started.elapsed());
                    let json: Value = serde_json::from_str(&body).unwrap();
                    zeros += json["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|i| i["value"] == "0")
                        .count();
                }
                503 if body.contains("\"kind\":\"Status\"") => status += 1,
                _ => other += 1,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "| {phase} | {total} | {ok} | {status} | {other} | {zeros} | {} | {:.2} |",
            first_ok.map_or("-".into(), |t| format!("{:.1}", t.as_secs_f64())),
            slowest.as_secs_f64()
        );
        assert_eq!(zeros, 0, "{phase}: a 0 was served");
    }
}

/// An exporter that accepts, answers headers and half an exposition, then hangs.
fn hanging_exporter(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0; 4096];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\nframescale_frame_duration_seconds{namespace=\"render\",pod=\"h-0\",container=\"w\",quantile=\"0.95\"} 0.1\n")
                .await;
            held.push(socket);
        }
    });
    addr
}

#[test]
#[ignore = "by hand: scripts/reliability"]
#[allow(clippy::too_many_lines, reason = "one scenario, told in order")]
fn dead_and_hung_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&root_a).unwrap();
    std::fs::create_dir_all(&root_b).unwrap();
    let (a, b) = (
        Exporter::start(&root_a, &["--push"]),
        Exporter::start(&root_b, &["--push"]),
    );
    push_pods(&a, 5, "a");
    push_pods(&b, 5, "b");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hung = hanging_exporter(&runtime);
    let (cert, key) = serving_certificate(dir.path());
    let urls = [a.addr, b.addr, hung].map(|addr| format!("http://{addr}/metrics"));
    let mut flags = vec!["--insecure-disable-auth", "--scrape-interval", "1s"];
    for url in &urls {
        flags.extend(["--exporter", url.as_str()]);
    }
    let adapter = Adapter::start(&cert, &key, &flags);
    let https = https_client(&[&cert], None);
    let url = format!("https://{}{SCORE}", adapter.addr);
    let pods = |body: &str| -> BTreeMap<String, String> {
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["describedObject"]["name"].as_str().unwrap().to_owned(),
                            i["value"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("both exporters' pods", Duration::from_secs(10), || {
        (pods(&fetch(&runtime, &https, &url).1).len() == 10).then_some(())
    });
    let killed = Instant::now();
    let pid_a = a.pid();
    drop(a);
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let (mut a_last_seen, mut zeros, mut pushed) = (None, 0, Instant::now());
    let mut a_values = std::collections::BTreeSet::new();
    while killed.elapsed() < Duration::from_mins(1) {
        if pushed.elapsed() > Duration::from_secs(5) {
            // Frames keep coming to the live pods (pushed ones age out of the 60 s window).
            push_pods(&b, 5, "b");
            pushed = Instant::now();
        }
        let sent = Instant::now();
        let (code, body) = fetch(&runtime, &https, &url);
        latency.record(sent.elapsed().as_micros() as u64).unwrap();
        assert_eq!(code, 200, "{body}");
        let answer = pods(&body);
        zeros += answer.values().filter(|v| *v == "0").count();
        assert_eq!(
            answer.keys().filter(|p| p.starts_with("b-")).count(),
            5,
            "the live exporter's pods: {body}"
        );
        if answer.keys().any(|p| p.starts_with("a-")) {
            a_last_seen = Some(killed.elapsed());
        }
        a_values.extend(
            answer
                .iter()
                .filter(|(p, _)| p.starts_with("a-"))
                .map(|(_, v)| v.clone()),
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let warnings = adapter.log().matches("Cannot scrape exporter").count();
    let (_, readyz) = support::get(&format!("http://{}/readyz", adapter.admin));
    let (_, metrics) = support::get(&format!("http://{}/metrics", adapter.admin));
    let failing = metrics
        .lines()
        .find(|l| l.starts_with("framescale_adapter_exporters{state=\"failing\"}"))
        .unwrap_or("-")
        .to_owned();
    println!(
        "\nOne exporter killed (pid {pid_a}), one hung mid-answer, one healthy; scrape every 1 s, max_age 45 s, 60 s of requests every 250 ms\n"
    );
    println!("| what | seen |\n|---|---|");
    println!(
        "| answer latency, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0
    );
    println!(
        "| the dead exporter's pods last served | {:.1} s after the kill (max_age 45 s) |",
        a_last_seen.map_or(0.0, |t| t.as_secs_f64())
    );
    println!(
        "| the dead exporter's pods' scores until then (40 ms frames: ratio 1.25; its holds cannot complete without observations) | {} |",
        a_values.into_iter().collect::<Vec<_>>().join(", ")
    );
    println!("| zero values served | {zeros} |");
    println!(
        "| \"Cannot scrape exporter\" warnings in 60 s (two failing exporters) | {warnings} |"
    );
    println!("| adapter metric | `{failing}` |");
    println!(
        "| /readyz | {} |",
        readyz.lines().collect::<Vec<_>>().join(" / ")
    );
    assert_eq!(zeros, 0);
    assert!(warnings <= 2, "{warnings}");
    assert!(a_last_seen.is_some_and(|t| t < Duration::from_secs(50)));
}

#[test]
#[ignore = "by hand: scripts/reliability"]
fn failover() {
    let (dir, exporter) = exporter_with_pods(20);
    let (cert, key) = serving_certificate(dir.path());
    let exporter_url = format!("http://{}/metrics", exporter.addr);
    let flags = ["--insecure-disable-auth", "--exporter", &exporter_url];
    let first = Adapter::start(&cert, &key, &flags);
    let second = Adapter::start(&cert, &key, &flags);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = FaultProxy::start(
        &runtime,
        vec![first.addr.parse().unwrap(), second.addr.parse().unwrap()],
    );
    let https = https_client(&[&cert], None);
    let url = format!("https://{}{SCORE}", proxy.addr);
    let mut first = Some(first);
    let report = load(
        &runtime,
        &https,
        &url,
        &[],
        500,
        20,
        Duration::from_secs(1),
        None,
        |t| {
            if t >= Duration::from_secs(5)
                && let Some(adapter) = first.take()
            {
                drop(adapter); // SIGKILL
            }
        },
    );
    report.print(
        "Failover: two adapters behind a round-robin proxy, one SIGKILLed at 5 s, 500 requests/s",
    );
    match report.steps.iter().rposition(|s| s.errors > 0) {
        Some(last) => println!(
            "errors {} ({:.2} % of the requests), the last in the second ending at {} s",
            report.errors(),
            report.errors() as f64 * 100.0 / (500.0 * 20.0),
            report.steps[last].at.as_secs()
        ),
        None => println!("no request failed"),
    }
}

#[test]
#[ignore = "by hand: scripts/reliability"]
fn certificate_rotation() {
    let (dir, exporter) = exporter_with_pods(20);
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let (cert, key) = serving_certificate(&served);
    let old = dir.path().join("old.crt");
    std::fs::copy(&cert, &old).unwrap();
    let next_dir = dir.path().join("next");
    std::fs::create_dir_all(&next_dir).unwrap();
    let (next_cert, next_key) = serving_certificate(&next_dir);
    let exporter_url = format!("http://{}/metrics", exporter.addr);
    let adapter = Adapter::start(
        &cert,
        &key,
        &["--insecure-disable-auth", "--exporter", &exporter_url],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The client trusts both certificates, as one trusting the CA would.
    let https = https_client(&[&old, &next_cert], None);
    let url = format!("https://{}{SCORE}", adapter.addr);
    // Whether a new connection is served the new certificate (`openssl s_client` prints it).
    let base64 = |pem: &str| -> String {
        let begin = pem.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
        pem[begin..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect()
    };
    let new_pem = base64(&std::fs::read_to_string(&next_cert).unwrap());
    let served_now = || {
        let output = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &adapter.addr])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        base64(&String::from_utf8_lossy(&output.stdout)) == new_pem
    };
    let (mut rotated_at, mut new_seen_at) = (None, None);
    let report = load(
        &runtime,
        &https,
        &url,
        &[],
        500,
        30,
        Duration::from_secs(2),
        None,
        |t| {
            if rotated_at.is_none() && t >= Duration::from_secs(5) {
                // As cert-manager does: both files replaced.
                std::fs::copy(&next_cert, &cert).unwrap();
                std::fs::copy(&next_key, &key).unwrap();
                rotated_at = Some(t);
            }
            if rotated_at.is_some()
                && new_seen_at.is_none()
                && t.as_millis() % 1000 < 100
                && served_now()
            {
                new_seen_at = Some(t);
            }
        },
    );
    report.print("Certificate rotation under 500 requests/s: the serving files replaced at 5 s");
    println!(
        "new connections served the new certificate {} after the files changed",
        match (rotated_at, new_seen_at) {
            (Some(r), Some(n)) => format!("{:.1} s", n.saturating_sub(r).as_secs_f64()),
            _ => "never (within the run)".into(),
        }
    );
    assert_eq!(report.errors(), 0, "no request failed across the rotation");
}

#[test]
#[ignore = "by hand: scripts/reliability"]
fn exporter_pressure() {
    let (pods, seconds) = (1_000_usize, env_or("FRAMESCALE_PRESSURE_SECONDS", 20));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    let files: Vec<PathBuf> = (0..pods)
        .map(|i| root.join(format!("render_p-{i}_uid-{i}/worker/0.log")))
        .collect();
    for file in &files {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"").unwrap();
    }
    let exporter = Exporter::start(
        &root,
        &["--rescan-interval", "5s", "--poll-interval", "500ms"],
    );
    // 50 MB/s in total: every 100 ms each pod writes a burst of ~5 KB (5 frame lines, 25 lines
    // of Blender progress).
    let stop = Arc::new(AtomicBool::new(false));
    let frames_written = Arc::new(AtomicU64::new(0));
    let bytes_written = Arc::new(AtomicU64::new(0));
    let writer_started = Instant::now();
    let writer = {
        let (stop, frames_written, bytes_written) =
            (stop.clone(), frames_written.clone(), bytes_written.clone());
        std::thread::spawn(move || {
            let mut handles: Vec<std::fs::File> = files
                .iter()
                .map(|f| OpenOptions::new().append(true).open(f).unwrap())
                .collect();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let stamp = framescale_exporter::cri::format_rfc3339(now_millis());
                let mut burst = String::new();
                for i in 0..30 {
                    if i % 6 == 0 {
                        let _ = writeln!(
                            burst,
                            "{stamp} stdout F framescale.frame duration_ms=33 outcome=ok"
                        );
                    } else {
                        let _ = writeln!(
                            burst,
                            "{stamp} stderr F Fra:{i} Mem:512M (Peak 640M) | Time:00:01.20 | Remaining:00:10.00 | Synchronizing object | Cube.{i:03} padding padding padding padding padding padding"
                        );
                    }
                }
                for handle in &mut handles {
                    handle.write_all(burst.as_bytes()).unwrap();
                }
                frames_written.fetch_add(5 * handles.len() as u64, Ordering::Relaxed);
                bytes_written.fetch_add((burst.len() * handles.len()) as u64, Ordering::Relaxed);
                next += Duration::from_millis(100);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let pid = exporter.pid();
    let (cpu_start, started) = (cpu_seconds(pid), Instant::now());
    let mut metrics_ms = Histogram::<u64>::new(3).unwrap();
    let mut rss_max = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let sent = Instant::now();
        let (code, _) = exporter.get("/metrics");
        assert_eq!(code, 200);
        metrics_ms
            .record(sent.elapsed().as_micros() as u64)
            .unwrap();
        rss_max = rss_max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu = (cpu_seconds(pid) - cpu_start) / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let wrote_for = writer_started.elapsed().as_secs_f64();
    let written = frames_written.load(Ordering::Relaxed);
    let megabytes = bytes_written.load(Ordering::Relaxed) as f64 / 1e6;
    let counted = wait_for_total(&exporter, written);
    println!(
        "\nExporter under pressure: {pods} pods, {:.0} MB/s of log lines for {seconds} s ({megabytes:.0} MB, {written} frames)\n",
        megabytes / wrote_for
    );
    println!("| what | seen |\n|---|---|");
    println!("| exporter CPU | {:.0} % of a core |", cpu * 100.0);
    println!(
        "| exporter RSS, largest | {:.1} MiB |",
        rss_max as f64 / 1024.0
    );
    println!(
        "| /metrics latency p50 / p99 / max ({} scrapes) | {:.1} / {:.1} / {:.1} ms |",
        metrics_ms.len(),
        metrics_ms.value_at_quantile(0.5) as f64 / 1000.0,
        metrics_ms.value_at_quantile(0.99) as f64 / 1000.0,
        metrics_ms.max() as f64 / 1000.0
    );
    println!("| frames counted / written | {counted} / {written} |");
}

/// Waits until the exporter's frames over every pod reach `want` (or 30 s); returns the count.
fn wait_for_total(exporter: &Exporter, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = exporter.get("/metrics");
        let total: f64 = body
            .lines()
            .filter(|l| l.starts_with("framescale_frames_total{") && l.contains("outcome=\"ok\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        if total as u64 >= want || Instant::now() > deadline {
            return total as u64;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
