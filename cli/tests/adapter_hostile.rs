//! Slow and hostile clients against a real `framescale adapter` over HTTPS: a TLS handshake
//! never made, headers trickled (slowloris), oversized headers, and more connections than
//! `--max-connections` are cut off, and the adapter keeps answering the others.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Adapter, serving_certificate, wait_for};

const DISCOVERY: &str = "/apis/custom.metrics.k8s.io/v1beta2";

/// `curl`'s status code for `path` (0: no answer), with `args`.
fn status(adapter: &Adapter, ca: &Path, path: &str, args: &[&str]) -> u16 {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(args)
        .arg(format!("https://{}{path}", adapter.addr))
        .output()
        .expect("curl is not installed: run ./scripts/test");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

/// How long until the server closes a connection that `feed` writes to.
fn closed_after(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn slow_and_hostile_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = serving_certificate(dir.path());
    let adapter = Adapter::start(
        &cert,
        &key,
        &[
            "--insecure-disable-auth",
            "--exporter",
            "http://127.0.0.1:9/metrics",
            "--header-read-timeout",
            "1s",
            "--max-connections",
            "4",
        ],
    );
    assert_eq!(status(&adapter, &cert, DISCOVERY, &[]), 200);

    // A connection that never starts its TLS handshake is closed after the timeout.
    let idle = TcpStream::connect(&adapter.addr).unwrap();
    let took = closed_after(idle);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Slowloris: TLS done, then a header line every 300 ms, never the blank line.
    let mut slow = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &adapter.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is not installed: run ./scripts/test");
    let started = Instant::now();
    let mut stdin = slow.stdin.take().unwrap();
    let _ = stdin.write_all(format!("GET {DISCOVERY} HTTP/1.1\r\nHost: a\r\n").as_bytes());
    let cut = loop {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = slow.try_wait().unwrap() {
            break (started.elapsed(), status);
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a trickling client was not cut off"
        );
        let _ = stdin.write_all(b"X-Trickle: 1\r\n");
    };
    assert!(cut.0 < Duration::from_secs(4), "cut off after {:?}", cut.0);

    // Headers past 64 KiB: 431, not an unbounded buffer.
    let big = format!("X-Big: {}", "a".repeat(100 << 10));
    assert_eq!(status(&adapter, &cert, DISCOVERY, &["-H", &big]), 431);

    // Past --max-connections (4), a new connection is closed at once; the adapter answers
    // again once they go.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&adapter.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = closed_after(TcpStream::connect(&adapter.addr).unwrap());
    assert!(refused < Duration::from_millis(500), "{refused:?}");
    drop(held);
    wait_for(
        "an answer once the held connections are gone",
        Duration::from_secs(5),
        || (status(&adapter, &cert, DISCOVERY, &[]) == 200).then_some(()),
    );
    let (_, metrics) = support::get(&format!("http://{}/metrics", adapter.admin));
    let refused_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("framescale_adapter_connections_refused_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(refused_total.is_some_and(|n| n >= 1.0), "{metrics}");
}
