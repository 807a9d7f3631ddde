//! Pod cgroups on a Kubernetes node: where they are, and their CPU time, CPU limit and memory.
//!
//! The kubelet makes one cgroup per pod, whatever the container runtime (containerd, CRI-O,
//! Docker via cri-dockerd); the runtime's container cgroups sit below it. Two drivers name them:
//!
//! | driver | pod cgroup |
//! |---|---|
//! | cgroupfs | `kubepods/[burstable/\|besteffort/]pod<uid>` |
//! | systemd | `kubepods.slice/[kubepods-burstable.slice/]kubepods-[burstable-]pod<uid with _ for ->.slice` |
//!
//! Under cgroup v2 the tree is at the root (`/sys/fs/cgroup`) and CPU time is `usage_usec` in
//! `cpu.stat`, the limit is `cpu.max` and memory is `memory.current`. Under v1 each controller
//! has its own tree: CPU time is `cpuacct.usage` (ns) under `cpuacct`, the limit
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us` under `cpu` — one hierarchy `cpu,cpuacct` on most
//! distributions, two separate mounts on others (the kubelet's cgroupfs nodes of some images) —
//! and memory `memory.usage_in_bytes` under `memory`. Guaranteed pods have no QoS level in between.

use std::fs;
use std::path::{Path, PathBuf};

use crate::procfs::cpu_list_len;

/// Which cgroup version a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The unified hierarchy at the root.
    V2 {
        /// The root (`/sys/fs/cgroup`).
        root: PathBuf,
    },
    /// One hierarchy per controller.
    V1 {
        /// The CPU accounting hierarchy (`/sys/fs/cgroup/cpu,cpuacct` or `…/cpuacct`).
        cpuacct: PathBuf,
        /// The CPU controller's hierarchy, with the quotas (the same directory, or `…/cpu`).
        cpu: PathBuf,
        /// The memory hierarchy, when mounted.
        memory: Option<PathBuf>,
    },
}

impl Layout {
    /// Finds the layout under `root`: v2 when `cgroup.controllers` is there, v1 when a CPU
    /// accounting hierarchy is; `None` otherwise.
    #[must_use]
    pub fn detect(root: &Path) -> Option<Layout> {
        if root.join("cgroup.controllers").is_file() {
            return Some(Layout::V2 { root: root.into() });
        }
        let find = |names: [&str; 3], file: &str| {
            names
                .iter()
                .map(|name| root.join(name))
                .find(|path| path.join(file).is_file())
        };
        let cpuacct = find(["cpu,cpuacct", "cpuacct,cpu", "cpuacct"], "cpuacct.usage")?;
        // Without a CPU controller mount, no quota can be read: the node's CPUs divide.
        let cpu = find(["cpu,cpuacct", "cpuacct,cpu", "cpu"], "cpu.cfs_period_us")
            .unwrap_or_else(|| cpuacct.clone());
        let memory = Some(root.join("memory")).filter(|p| p.is_dir());
        Some(Layout::V1 {
            cpuacct,
            cpu,
            memory,
        })
    }

    fn cpu_root(&self) -> &Path {
        match self {
            Layout::V2 { root } => root,
            Layout::V1 { cpuacct, .. } => cpuacct,
        }
    }

    /// Every pod cgroup: (pod UID, path relative to the CPU hierarchy).
    #[must_use]
    pub fn pod_cgroups(&self) -> Vec<(String, PathBuf)> {
        let mut found = Vec::new();
        for top in ["kubepods.slice", "kubepods"] {
            collect_pods(self.cpu_root(), Path::new(top), 0, &mut found);
        }
        found
    }

    /// CPU time used by the cgroup at `relative`, in nanoseconds.
    #[must_use]
    pub fn cpu_usage_nanos(&self, relative: &Path) -> Option<u64> {
        match self {
            Layout::V2 { root } => {
                let text = fs::read_to_string(root.join(relative).join("cpu.stat")).ok()?;
                let micros: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Some(micros * 1000)
            }
            Layout::V1 { cpuacct, .. } => {
                read_number(&cpuacct.join(relative).join("cpuacct.usage"))
            }
        }
    }

    /// CPUs the cgroup may use: its CFS quota over its period, else the CPUs of its cpuset
    /// (v2), else `None` (no limit: the node's CPUs).
    #[must_use]
    pub fn cpu_limit(&self, relative: &Path) -> Option<f64> {
        match self {
            Layout::V2 { root } => {
                let dir = root.join(relative);
                let quota = fs::read_to_string(dir.join("cpu.max"))
                    .ok()
                    .and_then(|text| parse_cpu_max(&text));
                quota.or_else(|| {
                    let cpus = fs::read_to_string(dir.join("cpuset.cpus.effective")).ok()?;
                    cpu_list_len(cpus.trim()).map(f64::from)
                })
            }
            Layout::V1 { cpu, .. } => {
                let dir = cpu.join(relative);
                let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
                let quota: i64 = quota.trim().parse().ok()?;
                let period = read_number(&dir.join("cpu.cfs_period_us"))?;
                (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
            }
        }
    }

    /// Memory charged to the cgroup, in bytes.
    #[must_use]
    pub fn memory_bytes(&self, relative: &Path) -> Option<u64> {
        match self {
            Layout::V2 { root } => read_number(&root.join(relative).join("memory.current")),
            Layout::V1 { memory, .. } => read_number(
                &memory
                    .as_ref()?
                    .join(relative)
                    .join("memory.usage_in_bytes"),
            ),
        }
    }
}

/// `cpu.max` of cgroup v2: `max 100000` (no limit) or `<quota> <period>` in microseconds.
#[must_use]
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_ascii_whitespace();
    let (quota, period) = (parts.next()?, parts.next()?);
    let quota: f64 = quota.parse().ok()?;
    let period: f64 = period.parse().ok()?;
    (quota > 0.0 && period > 0.0).then_some(quota / period)
}

/// The pod UID a pod cgroup's directory name carries: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid with _>.slice` (systemd); `None` for any other name.
#[must_use]
pub fn pod_uid(name: &str) -> Option<String> {
    let uid = if let Some(slice) = name.strip_suffix(".slice") {
        slice.rsplit_once("-pod")?.1.replace('_', "-")
    } else {
        name.strip_prefix("pod")?.to_owned()
    };
    let hex_and_dashes = uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    (uid.len() >= 32 && hex_and_dashes).then_some(uid)
}

fn collect_pods(root: &Path, relative: &Path, depth: usize, found: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(root.join(relative)) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child = relative.join(name);
        if let Some(uid) = pod_uid(name) {
            found.push((uid, child));
        } else if depth == 0 && is_qos_level(name) {
            collect_pods(root, &child, depth + 1, found);
        }
    }
}

/// A QoS level between `kubepods` and the pods of that class.
fn is_qos_level(name: &str) -> bool {
    matches!(
        name,
        "burstable" | "besteffort" | "kubepods-burstable.slice" | "kubepods-besteffort.slice"
    )
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "8f2a6c1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b";

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn pod_uids_come_from_both_drivers_names() {
        assert_eq!(pod_uid(&format!("pod{UID}")).as_deref(), Some(UID));
        let systemd = format!("kubepods-burstable-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(pod_uid(&systemd).as_deref(), Some(UID));
        let guaranteed = format!("kubepods-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(pod_uid(&guaranteed).as_deref(), Some(UID));
        for other in [
            "kubepods-burstable.slice",
            "burstable",
            "cri-containerd-0123456789abcdef0123456789abcdef.scope",
            "podnot-a-uid",
        ] {
            assert_eq!(pod_uid(other), None, "{other}");
        }
    }

    #[test]
    fn cgroup_v2_systemd_layout_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cgroup.controllers", "cpuset cpu io memory pids\n");
        let pod = format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        );
        // Real cpu.stat of a v2 pod cgroup (values changed).
        write(
            root,
            &format!("{pod}/cpu.stat"),
            "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n",
        );
        write(root, &format!("{pod}/cpu.max"), "150000 100000\n");
        write(root, &format!("{pod}/memory.current"), "52428800\n");
        write(
            root,
            &format!("{pod}/cri-containerd-0123456789abcdef.scope/cpu.stat"),
            "usage_usec 1\n",
        );
        let guaranteed = format!("kubepods.slice/kubepods-pod{}.slice", "1".repeat(32));
        write(root, &format!("{guaranteed}/cpu.stat"), "usage_usec 7\n");
        write(root, &format!("{guaranteed}/cpu.max"), "max 100000\n");
        write(
            root,
            &format!("{guaranteed}/cpuset.cpus.effective"),
            "0-3\n",
        );

        let layout = Layout::detect(root).unwrap();
        assert!(matches!(layout, Layout::V2 { .. }));
        let mut pods = layout.pod_cgroups();
        pods.sort();
        assert_eq!(
            pods,
            [
                ("1".repeat(32), PathBuf::from(&guaranteed)),
                (UID.to_owned(), PathBuf::from(&pod)),
            ]
        );
        let pod = Path::new(&pod);
        assert_eq!(layout.cpu_usage_nanos(pod), Some(1_234_567_000));
        assert_eq!(layout.cpu_limit(pod), Some(1.5));
        assert_eq!(layout.memory_bytes(pod), Some(52_428_800));
        assert_eq!(layout.cpu_limit(Path::new(&guaranteed)), Some(4.0));
    }

    #[test]
    fn cgroup_v1_cgroupfs_layout_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cpu,cpuacct/cpuacct.usage", "99999999999\n");
        let pod = format!("kubepods/besteffort/pod{UID}");
        write(
            root,
            &format!("cpu,cpuacct/{pod}/cpuacct.usage"),
            "2500000000\n",
        );
        write(root, &format!("cpu,cpuacct/{pod}/cpu.cfs_quota_us"), "-1\n");
        write(
            root,
            &format!("cpu,cpuacct/{pod}/cpu.cfs_period_us"),
            "100000\n",
        );
        write(
            root,
            &format!("memory/{pod}/memory.usage_in_bytes"),
            "1048576\n",
        );
        let limited = format!("kubepods/pod{}", "2".repeat(32));
        write(root, &format!("cpu,cpuacct/{limited}/cpuacct.usage"), "1\n");
        write(
            root,
            &format!("cpu,cpuacct/{limited}/cpu.cfs_quota_us"),
            "50000\n",
        );
        write(
            root,
            &format!("cpu,cpuacct/{limited}/cpu.cfs_period_us"),
            "100000\n",
        );

        let layout = Layout::detect(root).unwrap();
        assert!(matches!(
            layout,
            Layout::V1 {
                memory: Some(_),
                ..
            }
        ));
        let mut pods = layout.pod_cgroups();
        pods.sort();
        assert_eq!(
            pods,
            [
                ("2".repeat(32), PathBuf::from(&limited)),
                (UID.to_owned(), PathBuf::from(&pod)),
            ]
        );
        let pod = Path::new(&pod);
        assert_eq!(layout.cpu_usage_nanos(pod), Some(2_500_000_000));
        assert_eq!(layout.cpu_limit(pod), None, "no quota: the node's CPUs");
        assert_eq!(layout.memory_bytes(pod), Some(1_048_576));
        assert_eq!(layout.cpu_limit(Path::new(&limited)), Some(0.5));
    }

    /// Nodes that mount `cpu` and `cpuacct` apart (as the local 1.20 node does): CPU time from
    /// one, the quota from the other. Reading the quota where the time is gave no limit, so
    /// a 1-CPU pod on a 2-CPU node read half its real duty.
    #[test]
    fn cgroup_v1_with_cpu_and_cpuacct_mounted_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cpuacct/cpuacct.usage", "99999999999\n");
        write(root, "cpu/cpu.cfs_period_us", "100000\n");
        let pod = format!("kubepods/burstable/pod{UID}");
        write(
            root,
            &format!("cpuacct/{pod}/cpuacct.usage"),
            "7000000000\n",
        );
        write(root, &format!("cpu/{pod}/cpu.cfs_quota_us"), "100000\n");
        write(root, &format!("cpu/{pod}/cpu.cfs_period_us"), "100000\n");
        let layout = Layout::detect(root).unwrap();
        assert_eq!(
            layout.pod_cgroups(),
            [(UID.to_owned(), PathBuf::from(&pod))]
        );
        let pod = Path::new(&pod);
        assert_eq!(layout.cpu_usage_nanos(pod), Some(7_000_000_000));
        assert_eq!(
            layout.cpu_limit(pod),
            Some(1.0),
            "the quota of the cpu hierarchy"
        );
    }

    #[test]
    fn no_cgroup_tree_is_no_layout() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Layout::detect(dir.path()), None);
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("garbage"), None);
    }
}
