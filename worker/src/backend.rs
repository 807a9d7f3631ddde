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

impl Renderer for Backend {
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        match self {
            Backend::Synthetic => Tracer.render(request),
            Backend::Blender(blender) => blender.render(request),
        }
    }
}
