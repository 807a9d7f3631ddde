//! The CPU duty source, for machines without a GPU: the real busy share of each pod's CPUs.
//!
//! Two kinds of pods are measured, both as CPU time used over the poll window divided by the
//! CPUs the pod may use:
//!
//! - **pods of this node** — one cgroup per pod ([`crate::cgroup`], v1 or v2, either driver),
//!   named by pod UID; the UID is matched to namespace and pod through the pods log root
//!   (`<namespace>_<pod>_<uid>`), which needs no API access. CPUs: the cgroup's CFS quota,
//!   else its cpuset, else the node's. The reading covers the whole pod (label `container=""`).
//! - **local processes** that something registered (`framescale demo` does, for its workers) in
//!   a processes file, one per line: `<pid> <namespace>/<pod> <container> [<cpus>]`. CPU time
//!   is the process's own plus that of children it has waited for (`/proc/<pid>/stat`); CPUs:
//!   `<cpus>` when given, else the CPUs the process may run on. A PID is tied to its start
//!   time, so a reused PID is a new process, not a jump in the old one's time.
//!
//! A reading needs two polls, so something seen for the first time has none yet. Anything that
//! cannot be read or attributed is a [`DeviceFailure`], never a 0. The ratio is capped at 1:
//! time of a child reaped during the window lands in that window whole.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use crate::cgroup::Layout;
use crate::device::{
    DeviceFailure, DeviceKind, DevicePoll, DeviceReading, DeviceSource, Duty, FailureReason,
    Measure,
};
use crate::discovery::pod_names;
use crate::procfs::{self, ProcStat, StatFile};
use crate::store::SeriesKey;

/// Where the CPU source reads.
#[derive(Debug, Clone)]
pub struct CpuSourceConfig {
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The cgroup root (`/sys/fs/cgroup`); `None` measures no pod cgroups.
    pub cgroup_root: Option<PathBuf>,
    /// The pods log root, to name pod UIDs.
    pub log_root: PathBuf,
    /// The file of registered local processes; `None` for none.
    pub processes_file: Option<PathBuf>,
}

/// One line of the processes file.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The process.
    pub pid: u32,
    /// Whose it is.
    pub key: SeriesKey,
    /// CPUs the pod may use; `None`: the CPUs the process may run on.
    pub cpus: Option<f64>,
}

/// Parses a processes file: `<pid> <namespace>/<pod> <container> [<cpus>]` per line; blank
/// lines and `#` comments are skipped. Returns the good lines and a message per bad one.
#[must_use]
pub fn parse_processes(text: &str) -> (Vec<Registration>, Vec<String>) {
    let mut registrations = Vec::new();
    let mut errors = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_registration(line) {
            Some(registration) => registrations.push(registration),
            None => errors.push(format!(
                "line {}: {line:?} is not `<pid> <namespace>/<pod> <container> [<cpus>]`",
                number + 1
            )),
        }
    }
    (registrations, errors)
}

fn parse_registration(line: &str) -> Option<Registration> {
    let mut fields = line.split_ascii_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let (namespace, pod) = fields.next()?.split_once('/')?;
    let container = fields.next()?;
    let cpus = match fields.next() {
        Some(cpus) => Some(
            cpus.parse::<f64>()
                .ok()
                .filter(|c| *c > 0.0 && c.is_finite())?,
        ),
        None => None,
    };
    if fields.next().is_some() || namespace.is_empty() || pod.is_empty() {
        return None;
    }
    Some(Registration {
        pid,
        key: SeriesKey::new(namespace, pod, container),
        cpus,
    })
}

/// A busy-time counter and when it was read.
#[derive(Debug, Clone, Copy)]
struct Sample {
    busy_nanos: u64,
    at: Instant,
}

impl Sample {
    /// Busy CPUs (busy seconds per second) since `previous`; `None` without a window.
    fn busy_cpus_since(self, previous: Option<Sample>) -> Option<f64> {
        let previous = previous?;
        let wall = self.at.duration_since(previous.at).as_secs_f64();
        (wall > 0.0)
            .then(|| self.busy_nanos.saturating_sub(previous.busy_nanos) as f64 / 1e9 / wall)
    }
}

/// The CPU duty source.
#[derive(Debug)]
pub struct CpuSource {
    config: CpuSourceConfig,
    layout: Option<Layout>,
    nanos_per_tick: u64,
    page_size: u64,
    node_cpus: f64,
    processes: HashMap<(u32, u64), Sample>,
    stat_files: HashMap<u32, StatFile>,
    buffer: Vec<u8>,
    cgroups: HashMap<PathBuf, Sample>,
    pod_names: HashMap<String, (String, String)>,
}

impl CpuSource {
    /// A source reading where `config` says. Logs which cgroup layout it found.
    #[must_use]
    pub fn new(config: CpuSourceConfig) -> Self {
        let layout = config.cgroup_root.as_deref().and_then(Layout::detect);
        match (&config.cgroup_root, &layout) {
            (Some(root), None) => {
                tracing::warn!(root = %root.display(), "No cgroup v1 or v2 CPU hierarchy found: pod cgroups are not measured");
            }
            (Some(_), Some(layout)) => tracing::info!(?layout, "Measuring pod cgroups"),
            (None, _) => {}
        }
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        CpuSource {
            config,
            layout,
            nanos_per_tick: 1_000_000_000 / ticks,
            page_size: rustix::param::page_size() as u64,
            node_cpus: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            processes: HashMap::new(),
            stat_files: HashMap::new(),
            buffer: vec![0; 4096],
            cgroups: HashMap::new(),
            pod_names: HashMap::new(),
        }
    }

    fn poll_processes(&mut self, poll: &mut DevicePoll, now: Instant) {
        let Some(file) = &self.config.processes_file else {
            return;
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            // Not written yet: no process is registered.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                poll.failures.push(DeviceFailure {
                    reason: FailureReason::Unreadable,
                    detail: format!("cannot read the processes file {}: {error}", file.display()),
                });
                return;
            }
        };
        let (registrations, errors) = parse_processes(&text);
        poll.failures
            .extend(errors.into_iter().map(|error| DeviceFailure {
                reason: FailureReason::Unreadable,
                detail: format!("{}: {error}", file.display()),
            }));
        // (busy CPUs, CPUs, resident bytes) per key, summed over its processes.
        let mut per_key: BTreeMap<SeriesKey, (f64, f64, u64)> = BTreeMap::new();
        let mut seen = HashMap::with_capacity(registrations.len());
        let mut opened = HashMap::with_capacity(registrations.len());
        for registration in registrations {
            let Some(stat) = self.read_stat(registration.pid, &mut opened) else {
                poll.failures.push(DeviceFailure {
                    reason: FailureReason::ProcessGone,
                    detail: format!(
                        "process {} of {}/{} is gone",
                        registration.pid, registration.key.namespace, registration.key.pod
                    ),
                });
                continue;
            };
            let sample = self.process_sample(stat, now);
            let id = (registration.pid, stat.start_ticks);
            let busy = sample.busy_cpus_since(self.processes.get(&id).copied());
            seen.insert(id, sample);
            let Some(busy) = busy else { continue };
            let cpus = registration.cpus.unwrap_or_else(|| {
                procfs::read_allowed_cpus(&self.config.proc_root, registration.pid)
                    .map_or(self.node_cpus, f64::from)
            });
            let entry = per_key.entry(registration.key).or_insert((0.0, cpus, 0));
            entry.0 += busy;
            entry.2 += stat.rss_pages * self.page_size;
        }
        self.processes = seen;
        self.stat_files = opened;
        for (key, (busy, cpus, rss)) in per_key {
            poll.readings.push(cpu_reading(key, busy / cpus, Some(rss)));
        }
    }

    /// One poll, as if taken at `now` (tests pass their own clock).
    pub fn poll_at(&mut self, now: Instant) -> DevicePoll {
        let mut poll = DevicePoll::default();
        self.poll_processes(&mut poll, now);
        self.poll_cgroups(&mut poll, now);
        poll
    }

    /// The stat of `pid` through its open file (opened when new, or again when the open one
    /// belongs to a process that is gone — the PID may have been reused); the file moves into
    /// `opened`, so files of processes no longer registered are closed after the poll.
    fn read_stat(&mut self, pid: u32, opened: &mut HashMap<u32, StatFile>) -> Option<ProcStat> {
        let buffer = &mut self.buffer;
        let cached = self
            .stat_files
            .remove(&pid)
            .and_then(|file| Some((file.read(buffer)?, file)));
        let (stat, file) = if let Some(found) = cached {
            found
        } else {
            let file = StatFile::open(&self.config.proc_root, pid)?;
            (file.read(buffer)?, file)
        };
        opened.insert(pid, file);
        Some(stat)
    }

    fn process_sample(&self, stat: ProcStat, at: Instant) -> Sample {
        Sample {
            busy_nanos: stat.cpu_ticks * self.nanos_per_tick,
            at,
        }
    }

    fn poll_cgroups(&mut self, poll: &mut DevicePoll, now: Instant) {
        let Some(layout) = &self.layout else { return };
        let pods = layout.pod_cgroups();
        if pods
            .iter()
            .any(|(uid, _)| !self.pod_names.contains_key(uid))
        {
            self.pod_names = pod_names(&self.config.log_root);
        }
        let mut seen = HashMap::with_capacity(pods.len());
        for (uid, path) in pods {
            let Some((namespace, pod)) = self.pod_names.get(&uid) else {
                poll.failures.push(DeviceFailure {
                    reason: FailureReason::UnknownPod,
                    detail: format!(
                        "pod cgroup {} has no pod with UID {uid} under {}",
                        path.display(),
                        self.config.log_root.display()
                    ),
                });
                continue;
            };
            let Some(busy_nanos) = layout.cpu_usage_nanos(&path) else {
                poll.failures.push(DeviceFailure {
                    reason: FailureReason::Unreadable,
                    detail: format!("cannot read the CPU time of cgroup {}", path.display()),
                });
                continue;
            };
            let sample = Sample {
                busy_nanos,
                at: now,
            };
            let busy = sample.busy_cpus_since(self.cgroups.get(&path).copied());
            seen.insert(path.clone(), sample);
            let Some(busy) = busy else { continue };
            let cpus = layout.cpu_limit(&path).unwrap_or(self.node_cpus);
            let key = SeriesKey::new(namespace, pod, "");
            poll.readings
                .push(cpu_reading(key, busy / cpus, layout.memory_bytes(&path)));
        }
        self.cgroups = seen;
    }
}

impl DeviceSource for CpuSource {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn poll(&mut self) -> DevicePoll {
        self.poll_at(Instant::now())
    }
}

fn cpu_reading(key: SeriesKey, ratio: f64, memory_bytes: Option<u64>) -> DeviceReading {
    DeviceReading {
        key,
        device: DeviceKind::Cpu,
        uuid: "cpu".into(),
        duty: Some(Duty {
            ratio: ratio.clamp(0.0, 1.0),
            measure: Measure::CpuTime,
        }),
        memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use super::*;

    #[test]
    fn processes_files_are_parsed_line_by_line() {
        let (good, bad) = parse_processes(
            "# demo workers\n\n101 render/worker-0 worker 1\n102 render/worker-1 worker\n\
             x render/a w\n103 render worker\n104 render/a w 0\n105 /a w\n106 ns/a w 1 extra\n",
        );
        assert_eq!(
            good,
            [
                Registration {
                    pid: 101,
                    key: SeriesKey::new("render", "worker-0", "worker"),
                    cpus: Some(1.0)
                },
                Registration {
                    pid: 102,
                    key: SeriesKey::new("render", "worker-1", "worker"),
                    cpus: None
                },
            ]
        );
        assert_eq!(bad.len(), 5, "{bad:?}");
        assert!(bad[0].starts_with("line 5: \"x render/a w\""), "{bad:?}");
    }

    #[test]
    fn pod_cgroups_are_attributed_through_the_log_root_or_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (cgroups, logs) = (dir.path().join("cgroup"), dir.path().join("pods"));
        let known = "0a1b2c3d-0000-4000-8000-00000000000a";
        let unknown = "0a1b2c3d-0000-4000-8000-00000000000b";
        fs::create_dir_all(logs.join(format!("render_worker-0_{known}/worker"))).unwrap();
        fs::create_dir_all(&cgroups).unwrap();
        fs::write(cgroups.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let set = |uid: &str, usage_usec: u64| {
            let pod = cgroups.join(format!("kubepods/burstable/pod{uid}"));
            fs::create_dir_all(&pod).unwrap();
            fs::write(pod.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
            fs::write(pod.join("cpu.max"), "200000 100000\n").unwrap();
            fs::write(pod.join("memory.current"), "4096\n").unwrap();
        };
        set(known, 1_000_000);
        set(unknown, 0);
        let mut source = CpuSource::new(CpuSourceConfig {
            proc_root: "/proc".into(),
            cgroup_root: Some(cgroups.clone()),
            log_root: logs,
            processes_file: None,
        });
        let t0 = Instant::now();
        let first = source.poll_at(t0);
        assert!(
            first.readings.is_empty(),
            "no window yet: no reading, not 0"
        );
        assert_eq!(first.failures.len(), 1);
        assert_eq!(first.failures[0].reason, FailureReason::UnknownPod);
        assert!(first.failures[0].detail.contains(unknown));

        // 1.5 CPU-seconds in 1 s on a 2-CPU quota: 75 % busy.
        set(known, 2_500_000);
        let second = source.poll_at(t0 + Duration::from_secs(1));
        assert_eq!(second.readings.len(), 1);
        let reading = &second.readings[0];
        assert_eq!(reading.key, SeriesKey::new("render", "worker-0", ""));
        assert_eq!(
            (reading.device, reading.uuid.as_str()),
            (DeviceKind::Cpu, "cpu")
        );
        assert!(
            (reading.duty.unwrap().ratio - 0.75).abs() < 1e-9,
            "{reading:?}"
        );
        assert_eq!(reading.memory_bytes, Some(4096));
    }

    #[test]
    fn a_registered_process_that_is_gone_is_a_failure_not_a_zero() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("processes");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(&file, format!("{pid} render/gone worker 1\n")).unwrap();
        let mut source = CpuSource::new(CpuSourceConfig {
            proc_root: "/proc".into(),
            cgroup_root: None,
            log_root: dir.path().into(),
            processes_file: Some(file),
        });
        let poll = source.poll_at(Instant::now());
        assert!(poll.readings.is_empty());
        assert_eq!(poll.failures.len(), 1);
        assert_eq!(poll.failures[0].reason, FailureReason::ProcessGone);
    }
}
