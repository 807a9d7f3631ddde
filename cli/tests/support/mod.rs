//! Helpers for the end-to-end tests: real processes on 127.0.0.1, stopped by PID on drop.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framescale_exporter::cri::format_rfc3339;

pub mod apiserver;
pub mod browser;

/// Runs `framescale <args>` to its end: (succeeded, stdout, stderr).
pub fn framescale<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A real fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Wraps each line of `text` as a full CRI record on stdout, stamped now.
pub fn cri(text: &str) -> String {
    let stamp = format_rfc3339(now_millis());
    text.lines().fold(String::new(), |mut out, line| {
        let _ = writeln!(out, "{stamp} stdout F {line}");
        out
    })
}

/// Appends bytes to a file, creating it and its directories.
pub fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes.as_ref()).unwrap();
}

/// Polls `probe` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP agent that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GET a URL: (status, body).
pub fn get(url: &str) -> (u16, String) {
    let mut response = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}

/// A free port on 127.0.0.1 (for programs that cannot be told to pick one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `framescale exporter` process on 127.0.0.1, killed on drop.
pub struct Exporter {
    child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    /// Starts the exporter over `root` with fast polling (unless `extra` sets the intervals),
    /// plus `extra` flags, and waits until its first scan is done.
    pub fn start(root: &Path, extra: &[&str]) -> Exporter {
        let mut command = Command::new(env!("CARGO_BIN_EXE_framescale"));
        command.args(["exporter", "--listen", "127.0.0.1:0"]);
        for (flag, value) in [("--poll-interval", "50ms"), ("--rescan-interval", "100ms")] {
            if !extra.contains(&flag) {
                command.args([flag, value]);
            }
        }
        command.arg("--log-root").arg(root).args(extra);
        let (child, line, log) = spawn_until(command, "Exporter listening");
        let addr = field(&line, "addr").parse().unwrap();
        let exporter = Exporter { child, addr, log };
        // `/metrics` answers once the first scan is done; `/readyz` also says a device source
        // that cannot run (tested apart).
        wait_for("exporter's first scan", Duration::from_secs(10), || {
            (exporter.get("/metrics").0 == 200).then_some(())
        });
        exporter
    }

    /// GET a path of the exporter.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(&format!("http://{}{path}", self.addr))
    }

    /// POST a body to a path of the exporter.
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        let url = format!("http://{}{path}", self.addr);
        let mut response = agent().post(&url).send(body).unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// The exposition in Prometheus text format.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics(body)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "exporter ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` with `RUST_LOG=info`, collecting its stderr, and waits (20 s at most) for a
/// log line containing `marker`; returns the child, that line and the growing log.
pub fn spawn_until(
    command: Command,
    marker: &'static str,
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    spawn_until_with_stdout(command, marker, Stdio::null())
}

/// [`spawn_until`], with the child's stdout going to `stdout`.
pub fn spawn_until_with_stdout(
    mut command: Command,
    marker: &'static str,
    stdout: Stdio,
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start framescale");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(marker) {
                let _ = tx.send(line.clone());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "no {marker:?} in the log:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    (child, line, log)
}

/// Runs `framescale demo ARGS --report-dir REPORT` to its end and asserts it succeeded;
/// returns its stderr (the progress lines and the summary).
pub fn run_demo(args: &[&str], report: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .arg("demo")
        .args(args)
        .arg("--report-dir")
        .arg(report)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "demo failed:\n{stderr}");
    stderr
}

/// The demo report's `(seconds, replicas)` of every row (report.csv's first and third cells).
pub fn replicas_over_time(csv: &str) -> Vec<(f64, u32)> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (cells[0].parse().unwrap(), cells[2].parse().unwrap())
        })
        .collect()
}

/// The number right after `marker` in `text` (up to the next space), as printed in a summary
/// line; panics with the text when there is none.
pub fn number_after(text: &str, marker: &str) -> f64 {
    text.split(marker)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?} in: {text}"))
}

/// The value of `name=value` in a text log line.
pub fn field(line: &str, name: &str) -> String {
    line.split(&format!("{name}="))
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .to_owned()
}

/// A `/metrics` body, with lookups by series.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample whose name and labels are exactly `series`
    /// (`name{a="b",c="d"}`), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The value of a pod's frame-duration quantile, in seconds.
    pub fn quantile(&self, namespace: &str, pod: &str, container: &str, q: &str) -> Option<f64> {
        self.value(&format!(
            r#"framescale_frame_duration_seconds{{namespace="{namespace}",pod="{pod}",container="{container}",quantile="{q}"}}"#
        ))
    }

    /// A per-series sample of `name` with an extra `label="value"`, or none.
    pub fn series(
        &self,
        name: &str,
        namespace: &str,
        pod: &str,
        container: &str,
        extra: &str,
    ) -> Option<f64> {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(",{extra}")
        };
        self.value(&format!(
            r#"{name}{{namespace="{namespace}",pod="{pod}",container="{container}"{extra}}}"#
        ))
    }
}

/// The nearest-rank quantile of `samples` — the definition HDR histograms use — computed
/// independently of the exporter.
pub fn nearest_rank(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Asserts that an HDR quantile (3 significant digits, reported as the top of its bucket)
/// matches the exact value: never below it, above it by at most 1/1000 or one microsecond.
pub fn assert_hdr_close(got: f64, want: f64, what: &str) {
    let slack = (want / 1000.0).max(1e-6) + 1e-9;
    assert!(
        got >= want - 1e-9 && got <= want + slack,
        "{what}: got {got}, want {want} (HDR precision)"
    );
}

/// A Debian `prometheus` process on 127.0.0.1 scraping `targets` every second, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API answers.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The serving certificate of an HTTPS Prometheus, and the CA its clients trust (PEM files).
pub struct PrometheusTls<'a> {
    /// Certificate for 127.0.0.1.
    pub cert: &'a Path,
    /// Its key.
    pub key: &'a Path,
    /// The CA that signed it.
    pub ca: &'a Path,
    /// When given, clients must present a certificate this CA signed.
    pub client_ca: Option<&'a Path>,
}

impl Prometheus {
    /// Starts Prometheus over plain HTTP and waits until it is ready.
    pub fn start(targets: &[SocketAddr]) -> Prometheus {
        Prometheus::start_with(targets, None)
    }

    /// Starts Prometheus, serving HTTPS when `tls` is given (its `--web.config.file`), and waits
    /// until it is ready.
    pub fn start_with(targets: &[SocketAddr], tls: Option<&PrometheusTls>) -> Prometheus {
        Prometheus::launch(targets, tls, None)
    }

    /// Starts Prometheus, scraping nothing, over a history written by `promtool tsdb
    /// create-blocks-from openmetrics` from `openmetrics` (samples with their own timestamps,
    /// and no staleness markers where a series stops).
    pub fn start_with_history(openmetrics: &str) -> Prometheus {
        Prometheus::launch(&[], None, Some(openmetrics))
    }

    fn launch(
        targets: &[SocketAddr],
        tls: Option<&PrometheusTls>,
        history: Option<&str>,
    ) -> Prometheus {
        let binary = which("prometheus").expect(
            "the `prometheus` binary is not installed: run ./scripts/test, which installs Debian's prometheus package",
        );
        let dir = tempfile::tempdir().unwrap();
        if let Some(history) = history {
            let input = dir.path().join("history.om");
            fs::write(&input, history).unwrap();
            let output = Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&input)
                .arg(dir.path().join("data"))
                .output()
                .expect("promtool is not installed: run ./scripts/test");
            assert!(
                output.status.success(),
                "promtool: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: framescale-exporter\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(binary);
        if let Some(tls) = tls {
            let web = dir.path().join("web.yml");
            let mut config = format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                tls.cert.display(),
                tls.key.display()
            );
            if let Some(client_ca) = tls.client_ca {
                let _ = write!(
                    config,
                    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                    client_ca.display()
                );
            }
            fs::write(&web, config).unwrap();
            command.arg(format!("--web.config.file={}", web.display()));
        }
        let child = command
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_for(
            "prometheus /-/ready",
            Duration::from_secs(30),
            || match tls {
                None => {
                    let url = format!("http://{addr}/-/ready");
                    let response = agent().get(&url).call().ok()?;
                    (response.status().as_u16() == 200).then_some(())
                }
                Some(tls) => {
                    // With client certificates required, a TLS error is an answer too: the
                    // server is up.
                    let output = Command::new("curl")
                        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                        .arg(tls.ca)
                        .arg(format!("https://{addr}/-/ready"))
                        .output()
                        .expect("curl is not installed: run ./scripts/test");
                    let up = output.stdout == b"200"
                        || (tls.client_ca.is_some() && output.status.code() == Some(56));
                    up.then_some(())
                }
            },
        );
        prometheus
    }

    /// Runs an instant query; returns the `data.result` array.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (status, body) = get(&format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            encode(promql)
        ));
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "success", "{body}");
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The full path of a program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A `framescale adapter` process on 127.0.0.1 scraping every 200 ms (unless told), ready;
/// killed on drop.
pub struct Adapter {
    child: Child,
    /// Where the HTTPS API answers.
    pub addr: String,
    /// Where `/livez`, `/readyz` and the adapter's own `/metrics` answer.
    pub admin: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// `framescale adapter` with both listeners on a free port of 127.0.0.1.
pub fn adapter_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_framescale"));
    command.args([
        "adapter",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    command
}

impl Adapter {
    /// Starts the adapter serving `cert`/`key` with the `extra` flags, and waits for `/readyz`.
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Adapter {
        let mut command = adapter_command();
        if !extra.contains(&"--scrape-interval") {
            command.args(["--scrape-interval", "200ms"]);
        }
        command
            .args(extra)
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key);
        let (child, line, log) = spawn_until(command, "Adapter listening");
        let adapter = Adapter {
            child,
            addr: field(&line, "addr"),
            admin: field(&line, "admin_addr"),
            log,
        };
        wait_for("adapter /readyz", Duration::from_secs(10), || {
            (get(&format!("http://{}/readyz", adapter.admin)).0 == 200).then_some(())
        });
        adapter
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU time process `pid` has used (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, which is in parentheses: fields 14 and 15 are utime and stime.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An rcgen certificate for localhost and 127.0.0.1, written as `tls.crt` and `tls.key` in `dir`.
pub fn serving_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    fs::write(&cert, certified.cert.pem()).unwrap();
    fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}
