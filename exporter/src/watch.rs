//! Directory changes under the pods log root, from inotify, so a rotation is handled when it
//! happens rather than at the next rescan.
//!
//! Only entry changes are watched (created, deleted, renamed; never every write, which would
//! cost an event per log line): the root (pods come and go), each pod directory (containers),
//! each container directory (its logs rotate). The tailer still rescans on its interval — the
//! fallback where inotify is not available or its queue overflowed.

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// An inotify instance watching directories.
#[derive(Debug)]
pub struct LogWatch {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
    watched: HashSet<PathBuf>,
}

/// What changed while waiting.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Directories whose entries changed.
    pub dirs: HashSet<PathBuf>,
    /// Events were lost (the kernel's queue overflowed): rescan everything.
    pub overflow: bool,
}

impl LogWatch {
    /// A watch on nothing yet.
    pub fn new() -> io::Result<Self> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        Ok(LogWatch {
            fd,
            dirs: HashMap::new(),
            watched: HashSet::new(),
        })
    }

    /// Watches the entries of `dir` (once; again after it was deleted and made anew). Returns
    /// whether the watch is new: what was created in `dir` before it was not seen.
    pub fn add(&mut self, dir: &Path) -> io::Result<bool> {
        if self.watched.contains(dir) {
            return Ok(false);
        }
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::ONLYDIR;
        let wd = inotify::add_watch(&self.fd, dir, flags)?;
        self.dirs.insert(wd, dir.to_path_buf());
        self.watched.insert(dir.to_path_buf());
        Ok(true)
    }

    /// How many directories are watched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Whether nothing is watched.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Waits until something changes or `timeout` passes; returns what changed.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Changes> {
        let timeout = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64).cast_signed(),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.drain()
    }

    /// Reads every queued event.
    fn drain(&mut self) -> io::Result<Changes> {
        let mut changes = Changes::default();
        let mut buffer = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.fd, &mut buffer);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => break,
                Err(e) => return Err(e.into()),
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                changes.overflow = true;
                continue;
            }
            let Some(dir) = self.dirs.get(&event.wd()) else {
                continue;
            };
            changes.dirs.insert(dir.clone());
            if flags.contains(ReadFlags::IGNORED) {
                // The directory is gone (or unmounted): its watch with it.
                let dir = dir.clone();
                self.dirs.remove(&event.wd());
                self.watched.remove(&dir);
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_and_creations_are_seen_and_writes_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let container = dir.path().join("ns_pod_uid/worker");
        std::fs::create_dir_all(&container).unwrap();
        let mut watch = LogWatch::new().unwrap();
        assert!(watch.add(dir.path()).unwrap());
        assert!(watch.add(&container).unwrap());
        assert!(!watch.add(&container).unwrap(), "once");
        assert_eq!(watch.len(), 2);
        let log = container.join("0.log");
        std::fs::write(&log, b"a\n").unwrap();
        let changes = watch.wait(Duration::from_secs(1)).unwrap();
        assert_eq!(changes.dirs, HashSet::from([container.clone()]));
        // Appends are not entry changes.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| io::Write::write_all(&mut f, b"b\n"))
            .unwrap();
        assert_eq!(
            watch.wait(Duration::from_millis(50)).unwrap(),
            Changes::default()
        );
        std::fs::rename(&log, container.join("0.log.20261203-070000")).unwrap();
        let changes = watch.wait(Duration::from_secs(1)).unwrap();
        assert!(changes.dirs.contains(&container), "{changes:?}");
        std::fs::remove_dir_all(dir.path().join("ns_pod_uid")).unwrap();
        let changes = watch.wait(Duration::from_secs(1)).unwrap();
        assert!(changes.dirs.contains(&container));
        assert!(changes.dirs.contains(dir.path()));
        assert_eq!(watch.len(), 1, "the deleted directory's watch is gone");
    }
}
