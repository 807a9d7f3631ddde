//! One parser for a whole container log: framescale frame lines and Blender's output together.
//!
//! A render pod may run our worker (which writes [`frame_line`](crate::frame_line) records), a
//! bare Blender, or a worker that runs Blender and forwards its output; the exporter does not
//! know which, so every line is offered to both readers.

use crate::blender::BlenderParser;
use crate::frame::RenderEvent;
use crate::frame_line;

/// Reads one log stream, line by line. With the `serde` feature its state (a frame in progress)
/// can be saved and restored, so a restarted reader goes on where it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RenderLogParser {
    blender: BlenderParser,
}

impl RenderLogParser {
    /// A parser at the start of a log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one line (without its newline), calling `emit` for each event it completes.
    /// A line that opens like a frame line but is not a valid one is returned as an error, for
    /// the caller to count; it is not passed to the Blender reader.
    pub fn feed(
        &mut self,
        line: &[u8],
        emit: &mut impl FnMut(RenderEvent),
    ) -> Result<(), frame_line::Error> {
        match frame_line::parse(line) {
            Some(record) => emit(RenderEvent::Frame(record?)),
            None => self.blender.feed(line, emit),
        }
        Ok(())
    }

    /// Ends the stream (the file was removed or replaced by a new container's).
    pub fn finish(&mut self, emit: &mut impl FnMut(RenderEvent)) {
        self.blender.finish(emit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Outcome;

    #[test]
    fn both_formats_in_one_stream() {
        let log = "framescale.frame frame=1 duration_ms=10 outcome=ok\n\
                   Fra:2 Mem:1M\nSaved: '/o/2.png'\n Time: 00:00.50 (Saving: 00:00.01)\n\
                   framescale.frame duration_ms=oops\n";
        let mut parser = RenderLogParser::new();
        let mut events = Vec::new();
        let mut errors = 0;
        for line in log.lines() {
            if parser
                .feed(line.as_bytes(), &mut |e| events.push(e))
                .is_err()
            {
                errors += 1;
            }
        }
        assert_eq!(errors, 1);
        let frames: Vec<_> = events
            .iter()
            .map(|e| match e {
                RenderEvent::Frame(f) => (f.frame, f.outcome),
                RenderEvent::JobError(m) => panic!("{m}"),
            })
            .collect();
        assert_eq!(frames, [(Some(1), Outcome::Ok), (Some(2), Outcome::Ok)]);
    }
}
