//! `framescale worker` as a process on 127.0.0.1: frames rendered and logged as
//! `framescale.frame` lines on stdout, deterministic PNGs, clear errors, SIGTERM finishing every
//! admitted frame, a refused frame logged as refused, and the Blender backend running Debian's
//! Blender for real. (429 beyond the slots and the queue is the server's own test, with a
//! renderer it holds.)

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use framescale_core::frame::Outcome;
use framescale_core::frame_line;
use support::{agent, field, spawn_until_with_stdout};

/// A worker process whose stdout goes to a file; killed on drop.
struct Worker {
    child: Child,
    addr: String,
    stdout: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(slots: u32, queue: u32) -> Worker {
        Worker::start_with(slots, queue, &[])
    }

    fn start_with(slots: u32, queue: u32, extra: &[&str]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let stdout = dir.path().join("stdout");
        let mut command = Command::new(env!("CARGO_BIN_EXE_framescale"));
        command.args(["worker", "--listen", "127.0.0.1:0", "--slots"]);
        command
            .arg(slots.to_string())
            .arg("--queue")
            .arg(queue.to_string())
            .args(extra);
        let file = std::fs::File::create(&stdout).unwrap();
        let (child, line, _log) =
            spawn_until_with_stdout(command, "Worker listening", Stdio::from(file));
        Worker {
            child,
            addr: field(&line, "addr"),
            stdout,
            _dir: dir,
        }
    }

    /// POST a frame request.
    fn render(&self, body: &str, query: &str) -> Answer {
        post(&self.addr, body, query)
    }

    fn frame_lines(&self) -> Vec<framescale_core::frame::FrameRecord> {
        frame_lines(&self.stdout)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker's answer.
struct Answer {
    status: u16,
    headers: std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
}

fn post(addr: &str, body: &str, query: &str) -> Answer {
    let mut response = agent()
        .post(&format!("http://{addr}/v1/render{query}"))
        .header("content-type", "application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST to the worker: {e}"));
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_vec().unwrap(),
    }
}

fn frame_lines(path: &Path) -> Vec<framescale_core::frame::FrameRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match frame_line::parse(line.as_bytes()) {
            Some(Ok(record)) => record,
            other => panic!("not a valid frame line: {line}: {other:?}"),
        })
        .collect()
}

/// About a second of rendering in a debug build.
const SLOW: &str = r#"{"frame": 3, "width": 192, "height": 192, "samples": 64}"#;

#[test]
fn frames_are_rendered_logged_and_bad_requests_refused() {
    let worker = Worker::start(1, 1);
    let small = r#"{"frame": 5, "width": 16, "height": 12, "samples": 2}"#;
    let first = worker.render(small, "");
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "image/png");
    let png = first.body;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let render_ms: f64 = first.headers["x-render-ms"].parse().unwrap();
    assert_eq!(
        worker.render(small, "").body,
        png,
        "same request, same image"
    );
    assert_ne!(
        worker
            .render(
                r#"{"frame": 6, "width": 16, "height": 12, "samples": 2}"#,
                ""
            )
            .body,
        png
    );
    let answer = worker.render(small, "?timings=1");
    assert_eq!(answer.status, 200);
    let timings: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(timings["render_ms"].as_f64().unwrap() > 0.0, "{timings}");
    assert_eq!(timings["frame"], 5);

    for (body, want, message) in [
        ("{", 400, "bad request body"),
        (r#"{"frame": 1, "width": 0}"#, 400, "width and height"),
        (r#"{"frame": 1, "samples": 100000}"#, 400, "samples"),
        (r#"{"frame": 1, "colour": "red"}"#, 400, "unknown field"),
        (r#"{"frame": 1, "scene": "city"}"#, 404, "not found"),
    ] {
        let answer = worker.render(body, "");
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, want, "{text}");
        assert!(text.contains(message), "{text}");
    }

    // Every frame rendered or failed is one line on stdout: 3 small + 1 timings + the missing
    // scene (failed); the malformed requests are not frames. (Slots, queue and 429 are the
    // server's own test, with a renderer it holds.)
    let lines = worker.frame_lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.outcome == Outcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].error.as_deref().unwrap().contains("city"));
    let first = lines[0].duration.unwrap().as_secs_f64() * 1000.0;
    assert!((first - render_ms).abs() < 0.01, "{first} vs {render_ms}");
}

#[test]
fn sigterm_finishes_every_admitted_frame() {
    let mut worker = Worker::start(1, 2);
    let addr = worker.addr.clone();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || post(&addr, SLOW, ""))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let pid = worker.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for request in requests {
        let answer = request.join().unwrap();
        assert_eq!(answer.status, 200, "an admitted frame was lost");
        assert_eq!(&answer.body[..4], b"\x89PNG");
    }
    let exit = worker.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(worker.frame_lines().len(), 3);
    assert!(
        std::net::TcpStream::connect(&worker.addr).is_err(),
        "the listener is closed"
    );
}

#[test]
fn a_refused_frame_is_a_frame_line_too() {
    // One slot, one queue place: of three slow frames sent at once, one is refused.
    let worker = Worker::start(1, 1);
    let addr = worker.addr.clone();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || post(&addr, SLOW, ""))
        })
        .collect();
    let mut statuses: Vec<u16> = requests
        .into_iter()
        .map(|r| r.join().unwrap().status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429]);
    let lines = worker.frame_lines();
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l.outcome == Outcome::Refused)
        .collect();
    assert_eq!(refused.len(), 1, "{lines:?}");
    assert_eq!(refused[0].frame, Some(3));
    assert_eq!(refused[0].duration, None);
    assert_eq!(lines.iter().filter(|l| l.outcome == Outcome::Ok).count(), 2);
    assert!(
        lines.iter().all(|l| l.queue.is_some()),
        "every line says its queue time"
    );
}

#[test]
fn loadgen_reports_what_the_worker_served() {
    let worker = Worker::start(1, 2);
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(["loadgen", "--url"])
        .arg(format!("http://{}", worker.addr))
        .args([
            "--profile",
            "constant:25",
            "--duration",
            "3s",
            "--seed",
            "3",
            "--width",
            "8",
            "--height",
            "8",
            "--samples",
            "1",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("offered   25.0/s"), "progress: {stderr}");
    let number = |prefix: &str| -> usize {
        stdout
            .split(prefix)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
    };
    let (offered, ok) = (number("offered "), number(", ok "));
    // 25/s for 3 s: a Poisson count within 4 standard deviations of 75.
    assert!((45..=105).contains(&offered), "{stdout}");
    assert_eq!(ok, offered, "tiny frames, no errors: {stdout}");
    assert!(stdout.contains("latency ms: p50 "), "{stdout}");
    assert_eq!(
        worker.frame_lines().len(),
        ok,
        "one frame line per answered request"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args([
            "loadgen",
            "--url",
            "http://127.0.0.1:1",
            "--profile",
            "pulse:3",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--profile"));
}

/// Makes `<dir>/cube.blend` with Debian's Blender from the fixtures' scene script (a cube, a sun,
/// a camera; Cycles, 4 samples, denoising off) and saves it.
fn make_scene(dir: &Path) {
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/blender-3.4.1/scene.py"),
    )
    .unwrap();
    let save = format!(
        "{script}\nbpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        dir.join("cube.blend").display().to_string()
    );
    let output = Command::new("blender")
        .args([
            "--background",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python-expr",
        ])
        .arg(save)
        .output()
        .expect("blender is not installed: run ./scripts/test, which installs Debian's blender");
    assert!(
        output.status.success() && dir.join("cube.blend").exists(),
        "making the scene failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_blender_backend_renders_a_tiny_scene_and_maps_its_errors() {
    let scenes = tempfile::tempdir().unwrap();
    make_scene(scenes.path());
    let scenes_flag = format!("--scenes={}", scenes.path().display());
    let worker = Worker::start_with(1, 4, &["--backend=blender", &scenes_flag]);

    let answer = worker.render(
        r#"{"scene": "cube", "frame": 2, "width": 32, "height": 24, "samples": 2}"#,
        "",
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["content-type"], "image/png");
    // A PNG whose IHDR (bytes 16..24) carries the request's size.
    let body = &answer.body;
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n") && &body[12..16] == b"IHDR");
    let side = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
    assert_eq!((side(16), side(20)), (32, 24), "the request's size");

    let missing = worker.render(r#"{"scene": "nowhere", "frame": 1}"#, "");
    assert_eq!(missing.status, 404);
    let text = String::from_utf8_lossy(&missing.body);
    assert!(
        text.contains("Cannot read file") && text.contains("nowhere.blend"),
        "{text}"
    );
    let bad = worker.render(r#"{"scene": "../cube", "frame": 1}"#, "");
    assert_eq!(bad.status, 400);

    // The timing line: the frame's time is Blender's own `Time:`, as X-Render-Ms says.
    let lines = worker.frame_lines();
    let ok: Vec<_> = lines.iter().filter(|l| l.outcome == Outcome::Ok).collect();
    assert_eq!(ok.len(), 1, "{lines:?}");
    assert_eq!(ok[0].frame, Some(2));
    let logged_ms = ok[0].duration.unwrap().as_secs_f64() * 1000.0;
    let header_ms: f64 = answer.headers["x-render-ms"].parse().unwrap();
    assert!(
        (logged_ms - header_ms).abs() < 0.01,
        "{logged_ms} vs {header_ms}"
    );
    assert!(logged_ms > 0.0 && logged_ms < 60_000.0);
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.outcome == Outcome::Failed)
        .collect();
    assert!(
        failed.iter().any(|l| l
            .error
            .as_deref()
            .is_some_and(|e| e.contains("Cannot read file"))),
        "the failed frame is logged with Blender's error: {lines:?}"
    );
}
