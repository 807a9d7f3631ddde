//! A render job as submitted: a scene, a range of frames, the size and samples of each, and the
//! checks made before anything is enqueued. A leaf: no Redis here.

use std::ops::RangeInclusive;

/// Most frames one job may hold.
pub const MAX_FRAMES: u64 = 1_000_000;
/// Largest width or height a worker accepts.
pub const MAX_SIDE: u32 = 4096;
/// Most samples per pixel a worker accepts.
pub const MAX_SAMPLES: u32 = 4096;

/// What `framescale submit` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The scene's name (a file name, never a path).
    pub scene: String,
    /// The frames, first to last, both included.
    pub frames: RangeInclusive<u64>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub samples: u32,
    /// Whether its frames go before every normal job's.
    pub priority: Priority,
}

/// A job's priority: a worker takes every urgent frame waiting before any normal one (each
/// priority is a stream of its own, first in, first out within it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Taken only when no urgent frame waits (the default).
    #[default]
    Normal,
    /// Taken before any normal frame: previews, re-renders an artist waits on.
    Urgent,
}

impl Priority {
    /// Both, in the order workers take them.
    pub const TAKEN_FIRST: [Priority; 2] = [Priority::Urgent, Priority::Normal];

    /// Its name, as `submit --priority` takes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Urgent => "urgent",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Priority {
    type Err = JobError;

    fn from_str(text: &str) -> Result<Self, JobError> {
        match text {
            "normal" => Ok(Priority::Normal),
            "urgent" => Ok(Priority::Urgent),
            _ => Err(JobError::PrioritySyntax(text.to_owned())),
        }
    }
}

/// Why a job cannot be submitted; nothing was enqueued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The scene's name is not a file name.
    #[error(
        "scene {0:?} is not a scene name (letters, digits, '-', '_', '.', not starting with '.')"
    )]
    SceneName(String),
    /// No worker renders the scene.
    #[error("scene {scene:?} is unknown to the render workers (they render: {known})")]
    UnknownScene {
        /// The scene asked for.
        scene: String,
        /// The scenes the workers said they render.
        known: String,
    },
    /// The range is empty or reversed.
    #[error("frame range {first}..{last} is empty: the first frame must not be after the last")]
    EmptyRange {
        /// First frame.
        first: u64,
        /// Last frame.
        last: u64,
    },
    /// The range holds too many frames.
    #[error("frame range {first}..{last} holds {count} frames; at most {MAX_FRAMES} a job")]
    TooManyFrames {
        /// First frame.
        first: u64,
        /// Last frame.
        last: u64,
        /// Frames in it.
        count: u64,
    },
    /// A size or the samples are out of bounds.
    #[error("{0}")]
    OutOfBounds(String),
    /// The range does not parse.
    #[error("frame range {0:?} is not FIRST..LAST (for example 1..250) or one frame number")]
    RangeSyntax(String),
    /// The priority is neither `normal` nor `urgent`.
    #[error("priority {0:?} is neither normal nor urgent")]
    PrioritySyntax(String),
}

/// Whether `scene` is a scene name: letters, digits, `-`, `_` and `.`, not starting with a dot.
#[must_use]
pub fn is_scene_name(scene: &str) -> bool {
    !scene.is_empty()
        && !scene.starts_with('.')
        && scene
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks what one frame asks for: the scene's name, the size and the samples, within the bounds
/// every worker accepts (the worker's HTTP API checks its requests with this too).
pub fn check_frame(scene: &str, width: u32, height: u32, samples: u32) -> Result<(), JobError> {
    if !is_scene_name(scene) {
        return Err(JobError::SceneName(scene.to_owned()));
    }
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(JobError::OutOfBounds(format!(
            "width and height must be between 1 and {MAX_SIDE}, not {width}×{height}"
        )));
    }
    if !(1..=MAX_SAMPLES).contains(&samples) {
        return Err(JobError::OutOfBounds(format!(
            "samples must be between 1 and {MAX_SAMPLES}, not {samples}"
        )));
    }
    Ok(())
}

/// `FIRST..LAST` (both included) or one frame number.
pub fn parse_range(text: &str) -> Result<RangeInclusive<u64>, JobError> {
    let syntax = || JobError::RangeSyntax(text.to_owned());
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| syntax());
    if let Some((first, last)) = text.split_once("..") {
        Ok(number(first)?..=number(last.trim_start_matches('='))?)
    } else {
        let frame = number(text)?;
        Ok(frame..=frame)
    }
}

impl JobSpec {
    /// Frames in the job.
    #[must_use]
    pub fn frame_count(&self) -> u64 {
        (self.frames.end() - self.frames.start()).saturating_add(1)
    }

    /// Checks the scene's name, the range, sizes and samples (not whether a worker knows the
    /// scene: [`crate::Queue::check_scene`]).
    pub fn validate(&self) -> Result<(), JobError> {
        check_frame(&self.scene, self.width, self.height, self.samples)?;
        let (first, last) = (*self.frames.start(), *self.frames.end());
        if first > last {
            return Err(JobError::EmptyRange { first, last });
        }
        let count = self.frame_count();
        if count > MAX_FRAMES {
            return Err(JobError::TooManyFrames { first, last, count });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(scene: &str, frames: RangeInclusive<u64>) -> JobSpec {
        JobSpec {
            scene: scene.into(),
            frames,
            width: 64,
            height: 64,
            samples: 8,
            priority: Priority::Normal,
        }
    }

    #[test]
    fn priorities_read_by_name_and_nothing_else() {
        for priority in Priority::TAKEN_FIRST {
            assert_eq!(priority.name().parse::<Priority>(), Ok(priority));
        }
        assert_eq!(Priority::default(), Priority::Normal);
        for bad in ["", "Urgent", "high", "1"] {
            assert_eq!(
                bad.parse::<Priority>(),
                Err(JobError::PrioritySyntax(bad.into()))
            );
        }
    }

    #[test]
    fn ranges_parse_as_first_to_last_or_one_frame() {
        assert_eq!(parse_range("1..250"), Ok(1..=250));
        assert_eq!(parse_range("1..=250"), Ok(1..=250));
        assert_eq!(parse_range("7"), Ok(7..=7));
        for bad in ["", "a..b", "1..", "..3", "-1..3", "1-3"] {
            assert_eq!(
                parse_range(bad),
                Err(JobError::RangeSyntax(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bad_job_is_refused_with_its_reason() {
        assert_eq!(job("spheres", 1..=2000).validate(), Ok(()));
        assert_eq!(job("spheres", 1..=2000).frame_count(), 2000);
        assert_eq!(
            job("spheres", parse_range("5..3").unwrap()).validate(),
            Err(JobError::EmptyRange { first: 5, last: 3 })
        );
        assert!(matches!(
            job("spheres", 0..=MAX_FRAMES).validate(),
            Err(JobError::TooManyFrames { count, .. }) if count == MAX_FRAMES + 1
        ));
        for scene in ["", ".hidden", "../etc/passwd", "a b"] {
            assert_eq!(
                job(scene, 1..=1).validate(),
                Err(JobError::SceneName(scene.into()))
            );
        }
        let mut wide = job("spheres", 1..=1);
        wide.width = MAX_SIDE + 1;
        assert!(matches!(wide.validate(), Err(JobError::OutOfBounds(_))));
        let mut none = job("spheres", 1..=1);
        none.samples = 0;
        assert!(matches!(none.validate(), Err(JobError::OutOfBounds(_))));
    }
}
