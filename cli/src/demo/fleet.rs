//! The demo's render Deployment: worker processes started and stopped like its pods.
//!
//! Each worker's stdout (its frame lines) is written as a CRI log to
//! `<log root>/demo_<pod>_<uid>/worker/0.log`, as the kubelet would, so the exporter reads it
//! like any pod's; its PID is registered in the exporter's CPU processes file; and the pods
//! file the adapter resolves selectors with lists it with its labels. A stopped worker leaves the
//! URL list at once, drains (SIGTERM), and its log directory is removed once it has exited.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use framescale_exporter::cri::format_rfc3339;
use framescale_sim::hpa::replicas::{Phase, PodState};

use super::process::{Process, free_port, wait_until};

/// Namespace of the demo's pods.
pub const NAMESPACE: &str = "demo";
/// Label selector of the demo's pods (`app=framescale-worker`).
pub const SELECTOR: &str = "app=framescale-worker";
/// Name of the demo's Deployment.
pub const DEPLOYMENT: &str = "worker";

/// Where the fleet writes and how its workers run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Directory for the workers' stderr.
    pub dir: PathBuf,
    /// The pods log root the exporter follows.
    pub log_root: PathBuf,
    /// The exporter's CPU processes file.
    pub processes_file: PathBuf,
    /// The adapter's pods file.
    pub pods_file: PathBuf,
    /// Render slots per worker (also the CPUs it is registered with).
    pub slots: usize,
    /// Queue places per worker.
    pub queue: usize,
    /// Queue mode: the workers pull frames from this Redis (the demo's stream) instead of
    /// serving the render API.
    pub queue_url: Option<String>,
}

struct Worker {
    name: String,
    url: String,
    log_dir: PathBuf,
    process: Process,
    log_writer: Option<JoinHandle<()>>,
}

/// The running and draining workers.
pub struct Fleet {
    config: FleetConfig,
    running: Vec<Worker>,
    draining: Vec<Worker>,
    started: u32,
    urls: Arc<RwLock<Vec<String>>>,
}

impl Fleet {
    /// A fleet of no worker; writes the empty processes and pods files.
    pub fn new(config: FleetConfig) -> anyhow::Result<Fleet> {
        fs::create_dir_all(&config.log_root)
            .with_context(|| format!("cannot create {}", config.log_root.display()))?;
        let fleet = Fleet {
            config,
            running: Vec::new(),
            draining: Vec::new(),
            started: 0,
            urls: Arc::new(RwLock::new(Vec::new())),
        };
        fleet.publish()?;
        Ok(fleet)
    }

    /// The base URLs of the running workers, shared with the load generator.
    #[must_use]
    pub fn urls(&self) -> Arc<RwLock<Vec<String>>> {
        self.urls.clone()
    }

    /// Running workers.
    #[must_use]
    pub fn replicas(&self) -> usize {
        self.running.len()
    }

    /// The running workers as the HPA sees its pods: Running and Ready (each was ready before it
    /// joined).
    #[must_use]
    pub fn pods(&self) -> Vec<PodState> {
        self.running
            .iter()
            .map(|w| PodState {
                name: w.name.clone(),
                phase: Phase::Running,
                ready: true,
                deleted: false,
            })
            .collect()
    }

    /// Starts or stops workers until `replicas` run; the newest are stopped first.
    pub fn scale_to(&mut self, replicas: usize) -> anyhow::Result<()> {
        while self.running.len() < replicas {
            self.start()?;
        }
        while self.running.len() > replicas {
            let worker = self.running.pop().expect("more than zero");
            self.publish()?;
            worker.process.terminate();
            self.draining.push(worker);
        }
        Ok(())
    }

    /// Reaps workers that finished draining and removes their logs, as the kubelet does.
    pub fn reap(&mut self) {
        let mut draining = Vec::new();
        for mut worker in std::mem::take(&mut self.draining) {
            if !worker.process.exited() {
                draining.push(worker);
                continue;
            }
            if let Some(writer) = worker.log_writer.take() {
                let _ = writer.join();
            }
            let _ = fs::remove_dir_all(&worker.log_dir);
        }
        self.draining = draining;
    }

    /// Stops every worker (each drains first) and waits for them.
    pub fn shutdown(&mut self) {
        self.urls.write().map(|mut u| u.clear()).ok();
        for worker in self.running.drain(..).chain(self.draining.drain(..)) {
            let Worker {
                mut process,
                log_writer,
                ..
            } = worker;
            process.stop(Duration::from_secs(15));
            if let Some(writer) = log_writer {
                let _ = writer.join();
            }
        }
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let index = self.started;
        self.started += 1;
        let name = format!("worker-{index}");
        let uid = format!("00000000-0000-4000-8000-{index:012x}");
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut args = [
            "worker",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--slots",
            &self.config.slots.to_string(),
            "--queue",
            &self.config.queue.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if let Some(url) = &self.config.queue_url {
            // A frame a stopped worker held is rendered by another after 10 s.
            args.extend(
                [
                    "--queue-url",
                    url,
                    "--queue-stream",
                    super::farm::STREAM,
                    "--claim-after",
                    "10s",
                    "--consumer",
                    &name,
                ]
                .map(String::from),
            );
        }
        let stderr = self.config.dir.join(format!("{name}.stderr.log"));
        let mut process = Process::start(&name, &args, &stderr, Stdio::piped())?;
        let log_dir = self
            .config
            .log_root
            .join(format!("{NAMESPACE}_{name}_{uid}"));
        let log_file = log_dir.join("worker").join("0.log");
        let stdout = process.take_stdout().expect("piped");
        fs::create_dir_all(log_file.parent().expect("has a parent"))?;
        let log_writer = std::thread::Builder::new()
            .name(format!("{name}-log"))
            .spawn(move || write_cri_log(stdout, &log_file))?;
        let agent = plain_agent();
        wait_until(&name, Duration::from_secs(20), || {
            agent
                .get(&format!("{url}/readyz"))
                .call()
                .is_ok_and(|r| r.status() == 200)
        })
        .with_context(|| format!("see {}", stderr.display()))?;
        self.running.push(Worker {
            name,
            url,
            log_dir,
            process,
            log_writer: Some(log_writer),
        });
        self.publish()
    }

    /// Writes the processes file, the pods file and the URL list from the running workers.
    fn publish(&self) -> anyhow::Result<()> {
        let mut processes = String::from("# <pid> <namespace>/<pod> <container> [<cpus>]\n");
        let mut pods = String::from("pods:\n");
        for worker in &self.running {
            let _ = writeln!(
                processes,
                "{} {NAMESPACE}/{} worker {}",
                worker.process.pid(),
                worker.name,
                self.config.slots
            );
            let _ = writeln!(
                pods,
                "  - {{ namespace: {NAMESPACE}, name: {}, labels: {{ app: framescale-worker }} }}",
                worker.name
            );
        }
        let _ = write!(
            pods,
            "deployments:\n  - {{ namespace: {NAMESPACE}, name: {DEPLOYMENT}, selector: {SELECTOR} }}\n"
        );
        replace_file(&self.config.processes_file, &processes)?;
        replace_file(&self.config.pods_file, &pods)?;
        let urls = self.running.iter().map(|w| w.url.clone()).collect();
        *self
            .urls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = urls;
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP agent that answers every status as a response.
pub fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// Copies a worker's stdout into a CRI log, one `<time> stdout F <line>` record per line.
fn write_cri_log(stdout: std::process::ChildStdout, path: &Path) {
    let file = OpenOptions::new().create(true).append(true).open(path);
    let Ok(mut file) = file else {
        tracing::warn!(path = %path.display(), "Cannot open the worker's log file");
        return;
    };
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if writeln!(file, "{} stdout F {line}", format_rfc3339(now)).is_err() {
            break;
        }
    }
}

/// Replaces `path` whole (write a temporary file, rename), so a reader never sees half of it.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, text).with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}
