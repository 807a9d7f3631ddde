//! One frame: what a request asks for, checked, and rendering it on a backend.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::tracer;

/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 4096;
/// Most samples per pixel accepted.
pub const MAX_SAMPLES: u32 = 4096;

/// A request for one frame (`POST /v1/render` body, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameRequest {
    /// Scene name (default `spheres`).
    #[serde(default = "default_scene")]
    pub scene: String,
    /// Frame number.
    pub frame: u64,
    /// Width in pixels (default 64).
    #[serde(default = "default_side")]
    pub width: u32,
    /// Height in pixels (default 64).
    #[serde(default = "default_side")]
    pub height: u32,
    /// Samples per pixel (default 8).
    #[serde(default = "default_samples")]
    pub samples: u32,
}

fn default_scene() -> String {
    "spheres".into()
}

fn default_side() -> u32 {
    64
}

fn default_samples() -> u32 {
    8
}

/// Why a frame is refused or fails; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The request is malformed or out of range (400).
    #[error("{0}")]
    BadRequest(String),
    /// The scene does not exist (404).
    #[error("{0}")]
    SceneNotFound(String),
    /// The renderer failed (500).
    #[error("{0}")]
    Failed(String),
}

impl FrameRequest {
    /// Checks sizes and samples; the scene is checked by the backend.
    pub fn validate(&self) -> Result<(), RenderError> {
        if !(1..=MAX_SIDE).contains(&self.width) || !(1..=MAX_SIDE).contains(&self.height) {
            return Err(RenderError::BadRequest(format!(
                "width and height must be between 1 and {MAX_SIDE}, not {}×{}",
                self.width, self.height
            )));
        }
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(RenderError::BadRequest(format!(
                "samples must be between 1 and {MAX_SAMPLES}, not {}",
                self.samples
            )));
        }
        Ok(())
    }
}

/// A rendered frame.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The image, PNG.
    pub png: Vec<u8>,
    /// Time spent rendering (and encoding).
    pub render_time: Duration,
}

/// Where frames are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The built-in CPU path tracer.
    Synthetic,
}

impl Backend {
    /// Renders `request` on the calling thread (blocking).
    pub fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        match self {
            Backend::Synthetic => {
                if !tracer::SCENES.contains(&request.scene.as_str()) {
                    return Err(RenderError::SceneNotFound(format!(
                        "scene {:?} not found; the synthetic backend has {:?}",
                        request.scene,
                        tracer::SCENES
                    )));
                }
                let started = Instant::now();
                let image = tracer::render(
                    request.frame,
                    request.width,
                    request.height,
                    request.samples,
                );
                let png = tracer::png(&image);
                Ok(Rendered {
                    png,
                    render_time: started.elapsed(),
                })
            }
        }
    }
}
