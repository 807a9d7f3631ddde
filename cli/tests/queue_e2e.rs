//! Queue mode end to end with real processes: `framescale submit --wait` puts a job on a real
//! redis-server, `framescale worker --queue-url` processes pull it, one is killed (SIGKILL, as
//! an evicted pod) in the middle, and every frame is rendered and counted exactly once in the
//! job, with duplicates no more than the frames the killed worker held.

mod support;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use framescale_queue::testing::RedisServer;
use support::{framescale, free_port, spawn_until_with_stdout, wait_for};

const STREAM: &str = "e2e:frames";

fn worker(redis: &RedisServer, name: &str, stdout: File) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_framescale"));
    command.args([
        "worker",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--queue-url",
        &redis.url(),
        "--queue-stream",
        STREAM,
        "--slots",
        "2",
        "--claim-after",
        "2s",
        "--consumer",
        name,
    ]);
    spawn_until_with_stdout(command, "Worker pulling frames", Stdio::from(stdout)).0
}

fn queue(redis: &RedisServer) -> framescale_queue::Queue {
    framescale_queue::Queue::new(&redis.url(), STREAM, Duration::from_secs(2)).unwrap()
}

#[test]
fn a_job_survives_a_killed_worker_with_every_frame_done_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let frames_of = |name: &str| File::create(dir.path().join(format!("{name}.out"))).unwrap();
    let mut victim = worker(&redis, "victim", frames_of("victim"));
    let mut survivor = worker(&redis, "survivor", frames_of("survivor"));
    let submit = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args([
            "submit",
            "--queue-url",
            &redis.url(),
            "--queue-stream",
            STREAM,
        ])
        .args([
            "--frames",
            "1..400",
            "--width",
            "16",
            "--height",
            "16",
            "--samples",
            "1",
        ])
        .args(["--wait", "--progress-every", "200ms", "--timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let queue = queue(&redis);
    wait_for("100 frames done", Duration::from_mins(1), || {
        let done = runtime.block_on(queue.progress("j1")).ok()?.done;
        (done >= 100).then_some(())
    });
    victim.kill().unwrap();
    victim.wait().unwrap();
    let output = submit.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("job j1: 400 frames of spheres (1..400)"),
        "{stdout}"
    );
    assert!(stderr.contains("done ("), "progress printed: {stderr}");
    let progress = runtime.block_on(queue.progress("j1")).unwrap();
    assert_eq!((progress.done, progress.failed), (400, 0));
    assert!(
        progress.duplicates <= 2,
        "no more duplicates than the victim's 2 slots: {progress:?}"
    );
    assert!(
        stdout.contains(&format!(
            "400 done, 0 failed, {} duplicates",
            progress.duplicates
        )),
        "{stdout}"
    );
    let backlog = runtime.block_on(queue.backlog()).unwrap();
    assert_eq!((backlog.frames, backlog.in_flight), (0, 0));
    // The survivor's frame lines carry the time each frame waited on the queue.
    let _ = nix_terminate(&mut survivor);
    let lines = std::fs::read_to_string(dir.path().join("survivor.out")).unwrap();
    let line = lines
        .lines()
        .find(|l| l.starts_with("framescale.frame"))
        .unwrap();
    assert!(
        line.contains(" queue_ms=") && line.contains("outcome=ok"),
        "{line}"
    );
}

/// SIGTERM, then the exit status.
fn nix_terminate(child: &mut Child) -> std::process::ExitStatus {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    child.wait().unwrap()
}

#[test]
fn a_bad_job_fails_before_anything_is_enqueued() {
    let redis = RedisServer::start();
    let url = redis.url();
    for (frames, scene, priority, says) in [
        ("9..1", "spheres", "normal", "frame range 9..1 is empty"),
        ("one..two", "spheres", "normal", "is not FIRST..LAST"),
        ("1..10", "../etc", "normal", "is not a scene name"),
        (
            "1..10",
            "spheres",
            "high",
            r#"priority "high" is neither normal nor urgent"#,
        ),
    ] {
        let (ok, _, stderr) = framescale(&[
            "submit",
            "--queue-url",
            &url,
            "--queue-stream",
            STREAM,
            "--frames",
            frames,
            "--scene",
            scene,
            "--priority",
            priority,
        ]);
        assert!(!ok && stderr.contains(says), "{frames} {scene}: {stderr}");
    }
    // Once a worker has said which scenes it renders, an unknown one is refused.
    let mut worker = worker(&redis, "w", File::create("/dev/null").unwrap());
    let (ok, _, stderr) = framescale(&[
        "submit",
        "--queue-url",
        &url,
        "--queue-stream",
        STREAM,
        "--frames",
        "1..3",
        "--scene",
        "bmw27",
    ]);
    assert!(
        !ok && stderr
            .contains(r#"scene "bmw27" is unknown to the render workers (they render: spheres)"#),
        "{stderr}"
    );
    let _ = nix_terminate(&mut worker);
    let backlog = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(queue(&redis).backlog())
        .unwrap();
    assert_eq!(backlog.frames, 0);
    let (ok, _, stderr) = framescale(&[
        "submit",
        "--queue-url",
        "redis://127.0.0.1:1/0",
        "--frames",
        "1..3",
    ]);
    assert!(!ok && stderr.contains("cannot answer"), "{stderr}");
}
