//! Whose a process is: PID → `/proc/<pid>/cgroup` → pod UID and container ID → namespace, pod
//! and container names, with no API access.
//!
//! A container's processes sit in a cgroup below their pod's ([`crate::cgroup`] names both
//! drivers' pod cgroups); the runtime names the container's own cgroup after its ID:
//!
//! | runtime | driver | container cgroup |
//! |---|---|---|
//! | containerd | systemd | `cri-containerd-<id>.scope` |
//! | CRI-O | systemd | `crio-<id>.scope` |
//! | Docker (cri-dockerd) | systemd | `docker-<id>.scope` |
//! | any | cgroupfs | `<id>` |
//!
//! Under cgroup v2 `/proc/<pid>/cgroup` is one line `0::<path>`; under v1 one line per
//! hierarchy, any of which carries the pod. The pod UID is named through the pods log root
//! (`<namespace>_<pod>_<uid>`), the container ID through the kubelet's
//! `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` links. Both maps are re-read when
//! an unknown UID or ID shows up. Processes outside Kubernetes (a workstation, the local demo, a
//! GPU check) can be registered as pods in a local processes file (`--local-processes`, the
//! CPU source's format: `<pid> <namespace>/<pod> <container> [<cpus>]`), which is asked first and
//! re-read at every [`Attribution::refresh`]. What cannot be named is an [`Unattributed`], never
//! a guess.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cgroup::pod_uid;
use crate::cpu::parse_processes;
use crate::discovery::pod_names;
use crate::store::SeriesKey;

/// Where the attribution reads.
#[derive(Debug, Clone)]
pub struct AttributionConfig {
    /// `/proc` of the node (its PIDs are what NVML reports).
    pub proc_root: PathBuf,
    /// The pods log root (`/var/log/pods`).
    pub log_root: PathBuf,
    /// The kubelet's container log links (`/var/log/containers`).
    pub containers_dir: PathBuf,
    /// Local processes registered as pods; `None` for none.
    pub processes_file: Option<PathBuf>,
}

/// Where a process sits, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCgroup {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's ID, when the cgroup names one.
    pub container_id: Option<String>,
}

/// Why a process is not attributed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unattributed {
    /// The process is gone (or was never visible here).
    #[error("process {0} is gone or not visible under the proc root")]
    Gone(u32),
    /// Its cgroup is no pod's: a process of the node itself.
    #[error("process {0} is not in a pod's cgroup")]
    NotAPod(u32),
    /// Its pod UID has no pod under the log root.
    #[error("process {pid} is in pod {uid}, which has no directory under the pods log root")]
    UnknownPod {
        /// The process.
        pid: u32,
        /// Its pod's UID.
        uid: String,
    },
}

/// Names processes' pods and containers.
#[derive(Debug)]
pub struct Attribution {
    config: AttributionConfig,
    pods: HashMap<String, (String, String)>,
    containers: HashMap<String, String>,
    registered: HashMap<u32, SeriesKey>,
    /// Owners found for PIDs seen at the last poll, kept while the PID is still seen.
    known: HashMap<u32, SeriesKey>,
}

impl Attribution {
    /// An attribution reading where `config` says; maps are read on first use.
    #[must_use]
    pub fn new(config: AttributionConfig) -> Self {
        Attribution {
            config,
            pods: HashMap::new(),
            containers: HashMap::new(),
            registered: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// Forgets the owners of PIDs `seen` no longer returns true for. A PID seen poll after poll
    /// keeps its owner without its cgroup being read again: a PID is reused only after the
    /// kernel has gone round the whole PID space, never between two polls.
    pub fn keep_only(&mut self, seen: impl Fn(u32) -> bool) {
        self.known.retain(|pid, _| seen(*pid));
    }

    /// Re-reads the local processes file; returns a message per line it cannot read.
    pub fn refresh(&mut self) -> Vec<String> {
        let Some(file) = &self.config.processes_file else {
            return Vec::new();
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return vec![format!(
                    "cannot read the local processes file {}: {error}",
                    file.display()
                )];
            }
        };
        let (registrations, errors) = parse_processes(&text);
        self.registered = registrations.into_iter().map(|r| (r.pid, r.key)).collect();
        errors
            .into_iter()
            .map(|e| format!("{}: {e}", file.display()))
            .collect()
    }

    /// The (namespace, pod, container) of process `pid`; the container is empty when its cgroup
    /// or the container links do not name it (the pod is still known).
    pub fn owner(&mut self, pid: u32) -> Result<SeriesKey, Unattributed> {
        if let Some(key) = self.registered.get(&pid).or_else(|| self.known.get(&pid)) {
            return Ok(key.clone());
        }
        let path = self.config.proc_root.join(pid.to_string()).join("cgroup");
        let text = std::fs::read_to_string(path).map_err(|_| Unattributed::Gone(pid))?;
        let cgroup = parse_proc_cgroup(&text).ok_or(Unattributed::NotAPod(pid))?;
        if !self.pods.contains_key(&cgroup.pod_uid) {
            self.pods = pod_names(&self.config.log_root);
        }
        let (namespace, pod) =
            self.pods
                .get(&cgroup.pod_uid)
                .ok_or_else(|| Unattributed::UnknownPod {
                    pid,
                    uid: cgroup.pod_uid.clone(),
                })?;
        let container = cgroup
            .container_id
            .as_deref()
            .map_or_else(String::new, |id| {
                if !self.containers.contains_key(id) {
                    self.containers = container_names(&self.config.containers_dir);
                }
                self.containers.get(id).cloned().unwrap_or_default()
            });
        let key = SeriesKey::new(namespace, pod, &container);
        self.known.insert(pid, key.clone());
        Ok(key)
    }
}

/// The pod (and container) of a `/proc/<pid>/cgroup` text; `None` when no line names a pod.
#[must_use]
pub fn parse_proc_cgroup(text: &str) -> Option<ProcessCgroup> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let uid = segments.by_ref().find_map(pod_uid)?;
        Some(ProcessCgroup {
            pod_uid: uid,
            container_id: segments.next_back().and_then(container_id),
        })
    })
}

/// The container ID a container cgroup's name carries (see the module table); `None` for
/// anything else (`crio-conmon-<id>.scope`, a runtime's helper, is not the container).
#[must_use]
pub fn container_id(name: &str) -> Option<String> {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    let id = ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// Container ID → container name, from the kubelet's links
/// `<pod>_<namespace>_<container>-<id>.log`; empty when the directory cannot be listed.
#[must_use]
pub fn container_names(dir: &Path) -> HashMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (rest, id) = name.strip_suffix(".log")?.rsplit_once('-')?;
            let mut parts = rest.splitn(3, '_');
            let (_pod, _namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
            let id = container_id(id)?;
            Some((id, container.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "8f2a6c1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b";

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn cgroups_of_every_runtime_and_driver() {
        let systemd_uid = UID.replace('-', "_");
        let cases = [
            // cgroup v2, systemd driver: containerd, CRI-O, Docker.
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{}.scope\n",
                id('a')
            ),
            format!(
                "0::/kubepods.slice/kubepods-pod{systemd_uid}.slice/crio-{}.scope\n",
                id('a')
            ),
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/docker-{}.scope\n",
                id('a')
            ),
            // cgroup v2, cgroupfs driver.
            format!("0::/kubepods/burstable/pod{UID}/{}\n", id('a')),
            // cgroup v1: one line per hierarchy.
            format!(
                "12:pids:/kubepods/besteffort/pod{UID}/{a}\n11:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{a}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{a}\n",
                a = id('a')
            ),
        ];
        for text in cases {
            assert_eq!(
                parse_proc_cgroup(&text),
                Some(ProcessCgroup {
                    pod_uid: UID.into(),
                    container_id: Some(id('a')),
                }),
                "{text}"
            );
        }
        // The pod's own cgroup (a process in no container of it), and CRI-O's conmon.
        let pod_only = format!("0::/kubepods/pod{UID}\n");
        assert_eq!(parse_proc_cgroup(&pod_only).unwrap().container_id, None);
        let conmon = format!(
            "0::/kubepods.slice/kubepods-pod{systemd_uid}.slice/crio-conmon-{}.scope\n",
            id('b')
        );
        assert_eq!(parse_proc_cgroup(&conmon).unwrap().container_id, None);
        // Processes of the node itself.
        for text in [
            "0::/system.slice/containerd.service\n",
            "0::/user.slice/user-0.slice/session-1.scope\n",
            "",
            "garbage",
        ] {
            assert_eq!(parse_proc_cgroup(text), None, "{text:?}");
        }
    }

    #[test]
    fn processes_are_named_through_the_log_root_and_the_container_links() {
        let dir = tempfile::tempdir().unwrap();
        let (proc_root, logs, links) = (
            dir.path().join("proc"),
            dir.path().join("pods"),
            dir.path().join("containers"),
        );
        std::fs::create_dir_all(logs.join(format!("render_blender-0_{UID}/blender"))).unwrap();
        std::fs::create_dir_all(&links).unwrap();
        std::fs::write(
            links.join(format!("blender-0_render_blender-{}.log", id('c'))),
            "",
        )
        .unwrap();
        let process = |pid: u32, cgroup: String| {
            std::fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
            std::fs::write(proc_root.join(format!("{pid}/cgroup")), cgroup).unwrap();
        };
        process(10, format!("0::/kubepods/pod{UID}/{}\n", id('c')));
        process(11, format!("0::/kubepods/pod{UID}/{}\n", id('d')));
        process(12, "0::/system.slice/Xorg.service\n".into());
        let other = "0a1b2c3d-0000-4000-8000-00000000000b";
        process(13, format!("0::/kubepods/pod{other}/{}\n", id('e')));
        let registered = dir.path().join("processes");
        std::fs::write(&registered, "12 lab/gpu-check-0 load\nnot a line\n").unwrap();
        let mut attribution = Attribution::new(AttributionConfig {
            proc_root,
            log_root: logs,
            containers_dir: links,
            processes_file: None,
        });
        assert_eq!(
            attribution.owner(10),
            Ok(SeriesKey::new("render", "blender-0", "blender"))
        );
        assert_eq!(
            attribution.owner(11),
            Ok(SeriesKey::new("render", "blender-0", "")),
            "a container without a link: its pod, no guessed name"
        );
        assert_eq!(attribution.owner(12), Err(Unattributed::NotAPod(12)));
        assert_eq!(
            attribution.owner(13),
            Err(Unattributed::UnknownPod {
                pid: 13,
                uid: other.into()
            })
        );
        assert_eq!(attribution.owner(14), Err(Unattributed::Gone(14)));

        // A registered local process is the pod it is registered as.
        attribution.config.processes_file = Some(registered);
        let errors = attribution.refresh();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            attribution.owner(12),
            Ok(SeriesKey::new("lab", "gpu-check-0", "load"))
        );
    }
}
