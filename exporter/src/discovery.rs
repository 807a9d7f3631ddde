//! Finding the log files of the pods to watch under the kubelet's pods log root.
//!
//! The kubelet lays logs out as `<root>/<namespace>_<pod>_<uid>/<container>/<N>.log`, where N is
//! the container's restart count; rotated files get a suffix (`0.log.20261122-010203`, maybe
//! `.gz`) and are not read. Namespace and pod names cannot contain `_` (they are DNS labels and
//! subdomains), so the directory name splits unambiguously.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use regex_lite::Regex;

use crate::store::SeriesKey;

/// Which pods and containers are watched.
#[derive(Debug, Clone)]
pub struct PodFilter {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Namespaces never watched (applied after `namespaces`).
    pub exclude_namespaces: Vec<String>,
    /// Container names to watch.
    pub containers: Regex,
}

impl PodFilter {
    /// Whether a container of a pod in `namespace` is watched.
    #[must_use]
    pub fn allows(&self, namespace: &str, container: &str) -> bool {
        self.allows_namespace(namespace) && self.containers.is_match(container)
    }

    fn allows_namespace(&self, namespace: &str) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && !self.exclude_namespaces.iter().any(|n| n == namespace)
    }
}

impl Default for PodFilter {
    /// Every container of every namespace except the cluster's own (`kube-system`,
    /// `kube-public`, `kube-node-lease`).
    fn default() -> Self {
        PodFilter {
            namespaces: Vec::new(),
            exclude_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            containers: Regex::new(".*").expect("valid regex"),
        }
    }
}

/// A pod's log directory name, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDir<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Pod name.
    pub pod: &'a str,
    /// Pod UID.
    pub uid: &'a str,
}

/// Splits `<namespace>_<pod>_<uid>`; `None` for any other name.
#[must_use]
pub fn parse_pod_dir(name: &str) -> Option<PodDir<'_>> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || namespace.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some(PodDir {
        namespace,
        pod,
        uid,
    })
}

/// Pod UID → (namespace, pod), from the pods log root's directory names (no API access needed);
/// empty when the root cannot be listed.
#[must_use]
pub fn pod_names(log_root: &Path) -> HashMap<String, (String, String)> {
    let Ok(entries) = std::fs::read_dir(log_root) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let dir = parse_pod_dir(&name)?;
            Some((dir.uid.to_owned(), (dir.namespace.into(), dir.pod.into())))
        })
        .collect()
}

/// One container log file to tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The series its frames belong to.
    pub key: SeriesKey,
    /// Its path.
    pub path: PathBuf,
}

/// What one scan of the root found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Log files of watched containers.
    pub files: Vec<LogFile>,
    /// Directories that could not be listed, with why.
    pub unreadable: Vec<(PathBuf, io::Error)>,
    /// Entries under the root that are not pod directories.
    pub foreign: Vec<PathBuf>,
    /// The pod and container directories listed (watched for changes between scans).
    pub dirs: Vec<PathBuf>,
}

/// Lists the log files of watched containers under `root`. Fails only when the root itself
/// cannot be listed; a pod or container directory that cannot be is reported in the scan.
pub fn scan(root: &Path, filter: &PodFilter) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for pod_entry in fs::read_dir(root)? {
        let Ok(pod_entry) = pod_entry else { continue };
        let name = pod_entry.file_name();
        let Some(pod) = name.to_str().and_then(parse_pod_dir) else {
            scan.foreign.push(pod_entry.path());
            continue;
        };
        if !pod_entry.file_type().is_ok_and(|t| t.is_dir())
            || !filter.allows_namespace(pod.namespace)
        {
            continue;
        }
        let containers = match fs::read_dir(pod_entry.path()) {
            Ok(entries) => {
                scan.dirs.push(pod_entry.path());
                entries
            }
            Err(e) => {
                scan.unreadable.push((pod_entry.path(), e));
                continue;
            }
        };
        for container_entry in containers.flatten() {
            let container_name = container_entry.file_name();
            let Some(container) = container_name.to_str() else {
                continue;
            };
            if !filter.allows(pod.namespace, container)
                || !container_entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let key = SeriesKey::new(pod.namespace, pod.pod, container);
            match fs::read_dir(container_entry.path()) {
                Ok(files) => {
                    scan.dirs.push(container_entry.path());
                    for file in files.flatten() {
                        if file.file_name().to_str().is_some_and(is_current_log_name) {
                            scan.files.push(LogFile {
                                key: key.clone(),
                                path: file.path(),
                            });
                        }
                    }
                }
                Err(e) => scan.unreadable.push((container_entry.path(), e)),
            }
        }
    }
    scan.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

/// `0.log`, `12.log`: the file a container writes; not the rotated `0.log.20261122-010203`.
fn is_current_log_name(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_directory_names() {
        assert_eq!(
            parse_pod_dir("render_blender-7d9f_0b5c-11ee"),
            Some(PodDir {
                namespace: "render",
                pod: "blender-7d9f",
                uid: "0b5c-11ee"
            })
        );
        for bad in ["render_blender", "a_b_c_d", "_b_c", "a__c", "lost+found"] {
            assert_eq!(parse_pod_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn log_file_names() {
        for (name, want) in [
            ("0.log", true),
            ("12.log", true),
            ("0.log.20261122-010203", false),
            (".log", false),
            ("a.log", false),
            ("0.log.gz", false),
        ] {
            assert_eq!(is_current_log_name(name), want, "{name}");
        }
    }

    #[test]
    fn filters() {
        let filter = PodFilter::default();
        assert!(filter.allows("render", "blender"));
        assert!(!filter.allows("kube-system", "blender"));
        let filter = PodFilter {
            namespaces: vec!["render".into()],
            exclude_namespaces: vec![],
            containers: Regex::new("^(blender|worker)$").unwrap(),
        };
        assert!(filter.allows("render", "worker"));
        assert!(!filter.allows("render", "istio-proxy"));
        assert!(!filter.allows("default", "worker"));
    }

    #[test]
    fn scan_finds_watched_logs_only() {
        let root = tempfile::tempdir().unwrap();
        let make = |rel: &str| {
            let path = root.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"").unwrap();
        };
        make("render_a_u1/blender/0.log");
        make("render_a_u1/blender/0.log.20261122-010203");
        make("render_a_u1/blender/1.log");
        make("kube-system_dns_u2/coredns/0.log");
        make("not-a-pod/x/0.log");
        let scan = scan(root.path(), &PodFilter::default()).unwrap();
        let names: Vec<_> = scan
            .files
            .iter()
            .map(|f| f.path.strip_prefix(root.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("render_a_u1/blender/0.log"),
                PathBuf::from("render_a_u1/blender/1.log")
            ]
        );
        assert_eq!(scan.files[0].key, SeriesKey::new("render", "a", "blender"));
        assert_eq!(scan.foreign.len(), 1);
    }
}
