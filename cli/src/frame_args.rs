//! The frames a command asks workers for: `--width`, `--height`, `--samples` (submit, loadgen).

use clap::Args;

/// Size and samples of each frame.
#[derive(Debug, Clone, Copy, Args)]
pub struct FrameArgs {
    /// Width of each frame, pixels.
    #[arg(long, default_value_t = 64)]
    pub width: u32,
    /// Height of each frame, pixels.
    #[arg(long, default_value_t = 64)]
    pub height: u32,
    /// Samples per pixel of each frame.
    #[arg(long, default_value_t = 8)]
    pub samples: u32,
}
