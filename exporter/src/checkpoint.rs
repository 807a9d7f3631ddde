//! Read positions and counters kept across restarts, in one small JSON file under
//! `--state-dir`, like a log shipper's checkpoints.
//!
//! The file holds, for every followed log, where it stands ([`Position`]: files by inode and
//! fingerprint, offsets, partial lines, the parser's frame in progress), and every series'
//! counters — taken together between two polls, so they agree: the counters count exactly the
//! frames before the offsets. A restarted exporter goes on from both, so a frame is neither lost
//! nor counted twice, and the counters go on instead of dropping to 0. It is written atomically
//! (a temporary file, fsync, rename) at an interval and on shutdown. After a SIGKILL the frames
//! read since the last checkpoint are read again (the counters go back to the checkpoint's, then
//! count them again); frames pushed since then are lost, as the push API keeps no log.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log_file::Position;
use crate::store::{SeriesCounts, SeriesKey};

/// The file's name under the state directory.
pub const FILE_NAME: &str = "exporter-checkpoint.json";

const VERSION: u32 = 1;

/// What the exporter keeps across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// When it was taken, ms since the epoch.
    pub written_at_millis: u64,
    /// Every followed log.
    pub streams: Vec<Position>,
    /// Every series' counters.
    pub series: Vec<(SeriesKey, SeriesCounts)>,
}

/// Why the checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file is not a checkpoint of this version.
    #[error("{path} is not a framescale exporter checkpoint: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl Checkpoint {
    /// A checkpoint taken at `written_at_millis`.
    #[must_use]
    pub fn new(
        written_at_millis: u64,
        streams: Vec<Position>,
        series: Vec<(SeriesKey, SeriesCounts)>,
    ) -> Self {
        Checkpoint {
            version: VERSION,
            written_at_millis,
            streams,
            series,
        }
    }

    /// The checkpoint under `dir`; `None` when there is none yet (a first start).
    pub fn load(dir: &Path) -> Result<Option<Self>, Error> {
        let path = dir.join(FILE_NAME);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(&path, source)),
        };
        let checkpoint: Checkpoint =
            serde_json::from_slice(&text).map_err(|source| Error::Invalid {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Some(checkpoint))
    }

    /// Writes it under `dir` atomically: readers see the old checkpoint or this one, whole.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(FILE_NAME);
        let temporary = dir.join(format!("{FILE_NAME}.tmp"));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(&serde_json::to_vec(self).map_err(io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| io_error(&path, source))
    }

    /// The position saved for `path`.
    #[must_use]
    pub fn position(&self, path: &Path) -> Option<&Position> {
        self.streams.iter().find(|p| p.path == path)
    }
}

/// Checks that `dir` can hold checkpoints: it exists (or is created) and is writable.
pub fn prepare(dir: &Path) -> Result<PathBuf, Error> {
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let probe = dir.join(format!("{FILE_NAME}.probe"));
    fs::write(&probe, b"").map_err(|source| io_error(dir, source))?;
    let _ = fs::remove_file(&probe);
    Ok(dir.to_path_buf())
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), None, "a first start");
        let checkpoint = Checkpoint::new(
            1_000,
            vec![Position {
                path: "/logs/ns_p_u/c/0.log".into(),
                files: Vec::new(),
                cri: [
                    crate::cri::Pending::default(),
                    crate::cri::Pending::default(),
                ],
                parser: framescale_core::render_log::RenderLogParser::default(),
            }],
            vec![(
                SeriesKey::new("ns", "p", "c"),
                SeriesCounts {
                    frames_ok: 7,
                    ..SeriesCounts::default()
                },
            )],
        );
        checkpoint.save(dir.path()).unwrap();
        assert_eq!(
            Checkpoint::load(dir.path()).unwrap(),
            Some(checkpoint.clone())
        );
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
        fs::write(dir.path().join(FILE_NAME), b"{\"version\": 1").unwrap();
        let error = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("is not a framescale exporter checkpoint"),
            "{error}"
        );
    }
}
