//! The backend the worker was started with: the synthetic path tracer or Blender, behind the
//! one [`Renderer`] trait.

use crate::blender::BlenderBackend;
use crate::frame::{FrameRequest, RenderError, Rendered, Renderer};
use crate::tracer::Tracer;

/// Where frames are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The built-in CPU path tracer ([`crate::tracer`]).
    Synthetic,
    /// Blender, one process per frame ([`crate::blender`]).
    Blender(BlenderBackend),
}

impl Backend {
    /// The scenes it renders: the synthetic backend's, or the `<scene>.blend` files of
    /// Blender's scenes directory now.
    #[must_use]
    pub fn scenes(&self) -> Vec<String> {
        match self {
            Backend::Synthetic => crate::tracer::SCENES
                .iter()
                .map(|&s| s.to_owned())
                .collect(),
            Backend::Blender(blender) => {
                let mut scenes: Vec<String> = std::fs::read_dir(&blender.scenes)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|entry| {
                        let name = entry.file_name().into_string().ok()?;
                        Some(name.strip_suffix(".blend")?.to_owned())
                    })
                    .collect();
                scenes.sort();
                scenes
            }
        }
    }
}

impl Renderer for Backend {
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        match self {
            Backend::Synthetic => Tracer.render(request),
            Backend::Blender(blender) => blender.render(request),
        }
    }
}
