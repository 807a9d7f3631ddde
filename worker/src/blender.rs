//! The Blender backend: one Blender process per frame, its console output read with core's
//! Blender parser.
//!
//! A request's scene is `<scenes>/<scene>.blend`. Blender runs in the background with
//! `--python-exit-code 1` (a failing script fails the process) and a setup expression that sets
//! the request's size and samples and turns Cycles denoising off (Debian's build has no
//! OpenImageDenoise), then renders the one frame to PNG in a directory of its own. The frame's
//! time is the one Blender prints (`Time:`, saving included). Failures keep Blender's own text:
//!
//! | Blender says | answer |
//! |---|---|
//! | `Error: Cannot read file '…'` (scene missing or not a .blend) | 404 |
//! | a Python error (`Error: Python: Traceback …`, exit code 1) | 500 |
//! | `Error: Render error … cannot save` (output not writable) | 500 |
//! | anything else without a saved frame | 500 with the last error, or the exit status |

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use framescale_core::blender::BlenderParser;
use framescale_core::frame::{Outcome, RenderEvent};

use crate::frame::{FrameRequest, RenderError, Rendered, Renderer};

/// Where Blender and the scenes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlenderBackend {
    /// The Blender executable.
    pub binary: PathBuf,
    /// Directory of `<scene>.blend` files.
    pub scenes: PathBuf,
    /// Directory where each frame's output directory is made (and removed).
    pub output: PathBuf,
}

/// What one Blender run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlenderRun {
    /// stdout and stderr.
    pub console: String,
    /// The exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
}

impl Renderer for BlenderBackend {
    /// Renders `request`; the time is the one Blender printed for the frame.
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        let scene = self.scenes.join(format!("{}.blend", request.scene));
        let dir = tempfile::Builder::new()
            .prefix("frame-")
            .tempdir_in(&self.output)
            .map_err(|e| {
                RenderError::Failed(format!(
                    "cannot make an output directory in {}: {e}",
                    self.output.display()
                ))
            })?;
        let run = self.run(&scene, request, &dir.path().join("frame_####"))?;
        let time = outcome(&run)?;
        let path = dir.path().join(format!("frame_{:04}.png", request.frame));
        let png = std::fs::read(&path).map_err(|e| {
            RenderError::Failed(format!(
                "Blender reported frame {} done but {} cannot be read: {e}",
                request.frame,
                path.display()
            ))
        })?;
        Ok(Rendered {
            png,
            render_time: time,
        })
    }
}

impl BlenderBackend {
    fn run(
        &self,
        scene: &Path,
        request: &FrameRequest,
        output: &Path,
    ) -> Result<BlenderRun, RenderError> {
        let output = Command::new(&self.binary)
            .arg("--background")
            .arg(scene)
            .args(["--python-exit-code", "1", "--python-expr"])
            .arg(setup_script(request))
            .arg("--render-output")
            .arg(output)
            .args(["--render-format", "PNG", "--render-frame"])
            .arg(request.frame.to_string())
            .output()
            .map_err(|e| {
                RenderError::Failed(format!("cannot run {}: {e}", self.binary.display()))
            })?;
        let mut console = String::from_utf8_lossy(&output.stdout).into_owned();
        console.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok(BlenderRun {
            console,
            exit_code: output.status.code(),
        })
    }
}

/// The Python run before the frame: the request's size and samples, denoising off.
#[must_use]
pub fn setup_script(request: &FrameRequest) -> String {
    format!(
        "import bpy\n\
         sc = bpy.context.scene\n\
         sc.render.resolution_x = {w}\n\
         sc.render.resolution_y = {h}\n\
         sc.render.resolution_percentage = 100\n\
         if sc.render.engine == 'CYCLES':\n\
         \x20   sc.cycles.samples = {s}\n\
         \x20   sc.cycles.use_denoising = False\n\
         \x20   sc.cycles.device = 'CPU'\n\
         elif sc.render.engine.startswith('BLENDER_EEVEE'):\n\
         \x20   sc.eevee.taa_render_samples = {s}\n",
        w = request.width,
        h = request.height,
        s = request.samples
    )
}

/// Reads a Blender run with core's parser: the first frame produced gives its time; otherwise
/// the failure, with Blender's text, mapped as the module's table says.
pub fn outcome(run: &BlenderRun) -> Result<Duration, RenderError> {
    let mut parser = BlenderParser::new();
    let mut events = Vec::new();
    for line in run.console.lines() {
        parser.feed(line.as_bytes(), &mut |event| events.push(event));
    }
    parser.finish(&mut |event| events.push(event));
    let mut first_error: Option<String> = None;
    for event in &events {
        match event {
            RenderEvent::Frame(frame)
                if frame.outcome == Outcome::Ok && run.exit_code == Some(0) =>
            {
                return frame.duration.ok_or_else(|| {
                    RenderError::Failed("Blender finished the frame without a time".into())
                });
            }
            RenderEvent::Frame(frame) => {
                first_error.get_or_insert_with(|| frame.error.clone().unwrap_or_default());
            }
            RenderEvent::JobError(error) => {
                first_error.get_or_insert_with(|| error.clone());
            }
        }
    }
    let status = run.exit_code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit code {c}"),
    );
    match first_error {
        Some(error) if error.starts_with("Cannot read file") => {
            Err(RenderError::SceneNotFound(format!("Blender: {error}")))
        }
        Some(error) if !error.is_empty() => {
            Err(RenderError::Failed(format!("Blender ({status}): {error}")))
        }
        _ => Err(RenderError::Failed(format!(
            "Blender ended ({status}) without rendering the frame"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> BlenderRun {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/blender-3.4.1");
        let console = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
        let code = std::fs::read_to_string(dir.join(format!("{name}.rc"))).unwrap();
        BlenderRun {
            console,
            exit_code: Some(code.trim().parse().unwrap()),
        }
    }

    #[test]
    fn a_rendered_frame_gives_blenders_time() {
        for name in ["a_cycles_3frames", "b_eevee", "c_workbench"] {
            let time = outcome(&fixture(name)).unwrap();
            assert!(
                time > Duration::ZERO && time < Duration::from_mins(1),
                "{name}: {time:?}"
            );
        }
    }

    #[test]
    fn a_missing_scene_is_not_found_with_blenders_text() {
        let error = outcome(&fixture("d_missing_blend")).unwrap_err();
        assert_eq!(
            error,
            RenderError::SceneNotFound(
                "Blender: Cannot read file '/render/does_not_exist.blend': No such file or directory"
                    .into()
            )
        );
    }

    #[test]
    fn a_python_error_fails_with_the_exception() {
        let RenderError::Failed(message) =
            outcome(&fixture("e2_python_error_with_exit_code")).unwrap_err()
        else {
            panic!("a Python error is a 500")
        };
        // The fixture was recorded with `--python-exit-code 3`.
        assert!(
            message.starts_with("Blender (exit code 3): Python"),
            "{message}"
        );
        assert!(
            message.contains("NameError: name 'undefined_name_xyz' is not defined"),
            "{message}"
        );
    }

    #[test]
    fn an_output_that_cannot_be_written_fails_with_blenders_text() {
        let RenderError::Failed(message) =
            outcome(&fixture("f_output_parent_is_file")).unwrap_err()
        else {
            panic!("an unwritable output is a 500")
        };
        assert!(message.contains("cannot save"), "{message}");
    }

    #[test]
    fn a_run_that_printed_nothing_useful_names_its_exit() {
        let run = BlenderRun {
            console: "Blender 3.4.1\n".into(),
            exit_code: None,
        };
        assert_eq!(
            outcome(&run).unwrap_err(),
            RenderError::Failed(
                "Blender ended (killed by a signal) without rendering the frame".into()
            )
        );
    }

    #[test]
    fn the_setup_script_sets_size_samples_and_no_denoising() {
        let request: FrameRequest =
            serde_json::from_str(r#"{"frame": 1, "width": 32, "height": 24, "samples": 2}"#)
                .unwrap();
        let script = setup_script(&request);
        for want in [
            "resolution_x = 32",
            "resolution_y = 24",
            "cycles.samples = 2",
            "use_denoising = False",
        ] {
            assert!(script.contains(want), "{script}");
        }
    }
}
