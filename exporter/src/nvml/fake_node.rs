//! A node's `/proc`, pods log root and container links in a temporary directory, laid out as
//! a kubelet and containerd (systemd driver, cgroup v2) lay them out, for tests and benchmarks
//! of the NVML source.

#![allow(
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    reason = "test helpers: they panic when the test machine cannot make a temporary directory or socket"
)]

use std::path::Path;

use crate::attribution::{Attribution, AttributionConfig};

/// A fake node; removed when dropped.
pub struct FakeNode {
    dir: tempfile::TempDir,
}

impl FakeNode {
    /// An empty node.
    #[must_use]
    pub fn new() -> Self {
        let node = FakeNode {
            dir: tempfile::tempdir().unwrap(),
        };
        for sub in ["proc", "pods", "containers"] {
            std::fs::create_dir_all(node.path(sub)).unwrap();
        }
        node
    }

    /// A directory of the node: `proc`, `pods` or `containers`.
    #[must_use]
    pub fn path(&self, sub: &str) -> std::path::PathBuf {
        self.dir.path().join(sub)
    }

    /// Process `pid` in container `container` of pod `namespace/pod`; `n` makes the pod's UID
    /// and the container's ID.
    pub fn process(&self, pid: u32, namespace: &str, pod: &str, container: &str, n: u32) {
        let uid = format!("00000000-0000-4000-8000-{n:012x}");
        let id = format!("{n:064x}");
        let write = |path: &Path, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        std::fs::create_dir_all(
            self.path("pods")
                .join(format!("{namespace}_{pod}_{uid}/{container}")),
        )
        .unwrap();
        write(
            &self
                .path("containers")
                .join(format!("{pod}_{namespace}_{container}-{id}.log")),
            "",
        );
        write(
            &self.path("proc").join(format!("{pid}/cgroup")),
            &format!(
                "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope\n",
                uid.replace('-', "_")
            ),
        );
    }

    /// Removes what [`FakeNode::process`] made: the pod is gone from the node.
    pub fn remove_process(&self, pid: u32, namespace: &str, pod: &str, container: &str, n: u32) {
        let uid = format!("00000000-0000-4000-8000-{n:012x}");
        let _ = std::fs::remove_dir_all(self.path("pods").join(format!("{namespace}_{pod}_{uid}")));
        let _ = std::fs::remove_dir_all(self.path("proc").join(pid.to_string()));
        let _ = std::fs::remove_file(
            self.path("containers")
                .join(format!("{pod}_{namespace}_{container}-{n:064x}.log")),
        );
    }

    /// A process of the node itself (a display server).
    pub fn host_process(&self, pid: u32) {
        let path = self.path("proc").join(pid.to_string());
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join("cgroup"),
            "0::/system.slice/display-manager.service\n",
        )
        .unwrap();
    }

    /// An attribution reading this node.
    #[must_use]
    pub fn attribution(&self) -> Attribution {
        Attribution::new(AttributionConfig {
            proc_root: self.path("proc"),
            log_root: self.path("pods"),
            containers_dir: self.path("containers"),
            processes_file: None,
        })
    }
}

impl Default for FakeNode {
    fn default() -> Self {
        FakeNode::new()
    }
}
