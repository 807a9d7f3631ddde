//! The Blender parser over real Blender output (`fixtures/`, copied from Debian's Blender 3.4.1
//! and a public Blender 5.0 render), and over arbitrary bytes.

use framescale_core::frame::{Outcome, RenderEvent};
use framescale_core::render_log::RenderLogParser;
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(text: &str) -> Vec<RenderEvent> {
    let mut parser = RenderLogParser::new();
    let mut events = Vec::new();
    for line in text.lines() {
        parser
            .feed(line.as_bytes(), &mut |e| events.push(e))
            .expect("no frame lines here");
    }
    parser.finish(&mut |e| events.push(e));
    events
}

/// A frame as (number, outcome, duration in ms, output or error).
type Row = (Option<u64>, Outcome, Option<u128>, String);

fn rows(events: &[RenderEvent]) -> (Vec<Row>, Vec<String>) {
    let mut frames = Vec::new();
    let mut job_errors = Vec::new();
    for event in events {
        match event {
            RenderEvent::Frame(f) => frames.push((
                f.frame,
                f.outcome,
                f.duration.map(|d| d.as_millis()),
                f.output
                    .clone()
                    .or_else(|| f.error.clone())
                    .unwrap_or_default(),
            )),
            RenderEvent::JobError(text) => job_errors.push(text.clone()),
        }
    }
    (frames, job_errors)
}

fn ok(frame: Option<u64>, ms: u128, output: &str) -> Row {
    (frame, Outcome::Ok, Some(ms), output.to_owned())
}

fn failed(frame: u64, ms: Option<u128>, error: &str) -> Row {
    (Some(frame), Outcome::Failed, ms, error.to_owned())
}

#[test]
fn every_fixture_parses_to_its_frames_and_errors() {
    let save_error =
        "Render error (Invalid argument) cannot save: '/render/out/afile/sub/frame_0001.png'";
    let after_save_error = format!("not rendered after an earlier error: {save_error}");
    let denoise = "Build without OpenImageDenoiser";
    let after_denoise = format!("not rendered after an earlier error: {denoise}");
    let cases: Vec<(&str, Vec<Row>, Vec<&str>)> = vec![
        (
            "blender-3.4.1/a_cycles_3frames.log",
            vec![
                ok(Some(1), 220, "/render/out/cycles_0001.png"),
                ok(Some(2), 0, "/render/out/cycles_0002.png"),
                ok(Some(3), 0, "/render/out/cycles_0003.png"),
            ],
            vec![],
        ),
        (
            "blender-3.4.1/b_eevee.log",
            vec![
                ok(Some(1), 4810, "/render/out/eevee_0001.png"),
                ok(Some(2), 890, "/render/out/eevee_0002.png"),
                ok(Some(3), 950, "/render/out/eevee_0003.png"),
            ],
            vec![],
        ),
        (
            "blender-3.4.1/c_workbench.log",
            vec![
                ok(None, 1240, "/render/out/wb_0001.png"),
                ok(None, 0, "/render/out/wb_0002.png"),
                ok(None, 0, "/render/out/wb_0003.png"),
            ],
            vec![],
        ),
        (
            "blender-3.4.1/d_missing_blend.log",
            vec![],
            vec!["Cannot read file '/render/does_not_exist.blend': No such file or directory"],
        ),
        (
            "blender-3.4.1/e2_python_error_with_exit_code.log",
            vec![],
            vec![
                "Python: NameError: name 'undefined_name_xyz' is not defined",
                "script failed, expr: 'import bpy, os",
            ],
        ),
        (
            "blender-3.4.1/f_output_parent_is_file.log",
            vec![
                failed(1, Some(250), save_error),
                failed(2, None, &after_save_error),
                failed(3, None, &after_save_error),
            ],
            vec![],
        ),
        (
            "blender-3.4.1/g_cycles_default_denoise_error.log",
            vec![
                failed(1, None, denoise),
                failed(2, None, &after_denoise),
                failed(3, None, &after_denoise),
            ],
            vec![],
        ),
        (
            "blender-5.0/cycles_gpu_frame1.log",
            vec![ok(Some(1), 139_280, "/tmp/0001.png")],
            vec![],
        ),
    ];
    for (name, want_frames, want_errors) in cases {
        let (frames, errors) = rows(&parse(&fixture(name)));
        assert_eq!(frames, want_frames, "{name}");
        assert_eq!(errors, want_errors, "{name}");
    }
}

#[test]
fn every_saved_time_pair_in_the_fixtures_is_a_frame() {
    for name in [
        "blender-3.4.1/a_cycles_3frames.log",
        "blender-3.4.1/b_eevee.log",
        "blender-3.4.1/c_workbench.log",
        "blender-5.0/cycles_gpu_frame1.log",
    ] {
        let text = fixture(name);
        let saved = text.lines().filter(|l| l.contains("Saved: '")).count();
        let (frames, _) = rows(&parse(&text));
        let ok = frames.iter().filter(|f| f.1 == Outcome::Ok).count();
        assert_eq!(ok, saved, "{name}");
    }
}

#[test]
fn every_failed_run_yields_failed_frames_or_job_errors() {
    for name in [
        "d_missing_blend",
        "e2_python_error_with_exit_code",
        "f_output_parent_is_file",
        "g_cycles_default_denoise_error",
    ] {
        let rc = fixture(&format!("blender-3.4.1/{name}.rc"));
        assert_ne!(rc.trim(), "0", "{name}");
        let (frames, errors) = rows(&parse(&fixture(&format!("blender-3.4.1/{name}.log"))));
        assert!(frames.iter().all(|f| f.1 == Outcome::Failed), "{name}");
        assert!(!frames.is_empty() || !errors.is_empty(), "{name}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..40)
    ) {
        let mut parser = RenderLogParser::new();
        let mut sink = |_e: RenderEvent| {};
        for line in &lines {
            let _ = parser.feed(line, &mut sink);
        }
        parser.finish(&mut sink);
    }

    #[test]
    fn blender_like_lines_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                "Fra:[0-9]{0,22}.{0,10}",
                "Saved: '?.{0,10}'?",
                " ?Time: [0-9:.]{0,14}( \\(Saving: .{0,8})?",
                "Error: .{0,20}",
                "Error: Python: Traceback \\(most recent call last\\):",
                "  File .{0,10}",
                "Append frame [0-9]{0,22}",
                "Blender quit",
                "[0-9:.]{0,12} +[a-z]{0,6} +\\| ?.{0,20}",
            ],
            0..60,
        )
    ) {
        let mut parser = RenderLogParser::new();
        let mut sink = |_e: RenderEvent| {};
        for line in &lines {
            let _ = parser.feed(line.as_bytes(), &mut sink);
        }
        parser.finish(&mut sink);
    }
}
