//! What a render log says happened: finished frames and job-level errors.

use std::fmt;
use std::time::Duration;

/// The latency a refused frame counts as: an hour (the windows' top, the longest duration a
/// frame line may carry), later than any target.
pub const REFUSED_LATENCY: Duration = Duration::from_hours(1);

/// How a frame ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The frame was rendered and written.
    Ok,
    /// The frame was started but not produced.
    Failed,
    /// The pod turned the frame away before rendering it (its slots and queue were full): the
    /// user never got it. Counted as later than any latency target.
    Refused,
}

impl Outcome {
    /// The value of the `outcome` label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One frame that a renderer finished, successfully or not.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRecord {
    /// The frame number, when the renderer says it (Blender's Workbench engine does not).
    pub frame: Option<u64>,
    /// Time to render the frame, saving included; absent when the frame failed before the
    /// renderer printed a time.
    pub duration: Option<Duration>,
    /// Time the frame waited before rendering started, when the renderer reports it.
    pub queue: Option<Duration>,
    /// Whether the frame was produced.
    pub outcome: Outcome,
    /// Where the frame was written (Blender's `Saved:` path, or `frame N` of a movie).
    pub output: Option<String>,
    /// The renderer's error text, for a failed frame.
    pub error: Option<String>,
}

impl FrameRecord {
    /// A successful frame that took `duration`.
    #[must_use]
    pub fn ok(frame: Option<u64>, duration: Duration) -> Self {
        FrameRecord {
            frame,
            duration: Some(duration),
            queue: None,
            outcome: Outcome::Ok,
            output: None,
            error: None,
        }
    }

    /// A frame the pod refused (no slot and no queue place), after waiting `queue` if it did.
    #[must_use]
    pub fn refused(frame: Option<u64>, queue: Option<Duration>) -> Self {
        FrameRecord {
            frame,
            duration: None,
            queue,
            outcome: Outcome::Refused,
            output: None,
            error: None,
        }
    }

    /// How long the user waited for the frame — queue plus render — when the pod produced it;
    /// a pod that reports no queue time is taken at its render time. `None` for a failed or
    /// refused frame.
    #[must_use]
    pub fn latency(&self) -> Option<Duration> {
        match (self.outcome, self.duration) {
            (Outcome::Ok, Some(render)) => Some(render + self.queue.unwrap_or_default()),
            _ => None,
        }
    }

    /// A failed frame with the renderer's error text.
    #[must_use]
    pub fn failed(frame: Option<u64>, duration: Option<Duration>, error: String) -> Self {
        FrameRecord {
            frame,
            duration,
            queue: None,
            outcome: Outcome::Failed,
            output: None,
            error: Some(error),
        }
    }
}

/// Something a render log reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderEvent {
    /// A frame ended.
    Frame(FrameRecord),
    /// The renderer reported an error outside any frame: the job failed before rendering (a
    /// scene that does not load, a script that raises).
    JobError(String),
}
