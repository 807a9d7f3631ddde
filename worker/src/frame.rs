//! One frame: what a request asks for and checks, what rendering it gives back, why it can
//! fail, and the [`Renderer`] trait every backend implements. A leaf: the backends
//! ([`crate::tracer`], [`crate::blender`], chosen by [`crate::backend`]) and the server build on it.

use std::time::Duration;

use serde::Deserialize;

pub use framescale_queue::job::{MAX_SAMPLES, MAX_SIDE};

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
    /// Checks the scene name's form, sizes and samples; whether the scene exists is the
    /// backend's to say. A scene name is a file name, never a path: letters, digits, `-`, `_`
    /// and `.`, not starting with a dot.
    pub fn validate(&self) -> Result<(), RenderError> {
        framescale_queue::job::check_frame(&self.scene, self.width, self.height, self.samples)
            .map_err(|e| RenderError::BadRequest(e.to_string()))
    }
}

/// Something that renders frames, blocking the calling thread: the synthetic path tracer and
/// Blender.
pub trait Renderer {
    /// Renders `request`: the PNG and the time it took, or why it could not.
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError>;
}

/// A rendered frame.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The image, PNG.
    pub png: Vec<u8>,
    /// Time spent rendering (and encoding); for Blender, the time it printed for the frame.
    pub render_time: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scene: &str) -> FrameRequest {
        FrameRequest {
            scene: scene.into(),
            frame: 1,
            width: 8,
            height: 8,
            samples: 1,
        }
    }

    #[test]
    fn scene_names_cannot_be_paths() {
        for bad in ["../etc/passwd", "a/b", ".hidden", "", "x y"] {
            let error = request(bad).validate().unwrap_err();
            assert!(matches!(error, RenderError::BadRequest(_)), "{bad}");
        }
        request("cube-1.v2").validate().unwrap();
    }
}
