//! The CPU duty source against real processes on this machine.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use framescale_exporter::cpu::{CpuSource, CpuSourceConfig};
use framescale_exporter::device::DevicePoll;

/// Kills and reaps its children when dropped, so a failed assertion leaves no process behind.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn source(processes_file: &Path) -> CpuSource {
    CpuSource::new(CpuSourceConfig {
        proc_root: "/proc".into(),
        cgroup_root: None,
        log_root: processes_file.parent().unwrap().into(),
        processes_file: Some(processes_file.into()),
    })
}

/// Nanoseconds the process's (only) thread has run, from the scheduler's own accounting
/// (`/proc/<pid>/schedstat`, first field): an independent reading of the same quantity.
fn scheduler_nanos(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// A child regulates itself to a duty of about one half: it burns CPU until its own CPU clock
/// has advanced 10 ms, then sleeps 10 ms. The source's reading over a 2 s window must match the
/// scheduler's nanosecond accounting of that child within 0.03: `/proc/<pid>/stat` reports the
/// same runtime rounded to clock ticks (10 ms at 100 Hz), so each end of the window may be off
/// by one tick — 0.01 of a 2 s window — and the two reads are a few microseconds apart. Whether
/// the child gets its half depends on the other tests sharing the 2 cores, so that check is
/// loose (0.25..0.65): the tight one is against the scheduler.
#[test]
fn a_child_burning_half_a_core_reads_back_within_tolerance() {
    let burner = "import time\nwhile True:\n    t = time.process_time()\n    while time.process_time() - t < 0.01: pass\n    time.sleep(0.01)\n";
    let child = Command::new("python3")
        .args(["-c", burner])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let pid = child.id();
    let _children = Children(vec![child]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("processes");
    std::fs::write(&file, format!("{pid} demo/burner-0 burner 1\n")).unwrap();
    let mut source = source(&file);
    std::thread::sleep(Duration::from_millis(300)); // past the interpreter's start-up

    let (start, first) = (Instant::now(), scheduler_nanos(pid));
    assert_eq!(
        source.poll_at(start),
        DevicePoll::default(),
        "no window yet"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (end, last) = (Instant::now(), scheduler_nanos(pid));
    let poll = source.poll_at(end);

    assert!(poll.failures.is_empty(), "{:?}", poll.failures);
    let [reading] = poll.readings.as_slice() else {
        panic!("one reading expected: {poll:?}")
    };
    let scheduler = (last - first) as f64 / 1e9 / end.duration_since(start).as_secs_f64();
    assert!(
        (reading.duty.unwrap().ratio - scheduler).abs() < 0.03,
        "read {:.3}, scheduler says {scheduler:.3}",
        reading.duty.unwrap().ratio
    );
    assert!(
        (0.25..0.65).contains(&reading.duty.unwrap().ratio),
        "a half-duty burner read {:.3}",
        reading.duty.unwrap().ratio
    );
    assert!(
        reading.memory_bytes.unwrap() > 1 << 20,
        "python holds > 1 MiB"
    );
}

/// One poll of 200 registered processes stays under 5 ms (the best of five polls, so that a
/// poll descheduled by a parallel test does not fail it).
#[test]
fn one_poll_of_200_processes_takes_under_5_ms() {
    let children: Vec<Child> = (0..200)
        .map(|_| {
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep runs")
        })
        .collect();
    let mut registrations = String::new();
    for (i, child) in children.iter().enumerate() {
        writeln!(registrations, "{} demo/pod-{i} worker 1", child.id()).unwrap();
    }
    let _children = Children(children);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("processes");
    std::fs::write(&file, registrations).unwrap();
    let mut source = source(&file);
    source.poll_at(Instant::now());
    let mut best = Duration::MAX;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        let poll = source.poll_at(started);
        best = best.min(started.elapsed());
        assert_eq!(poll.readings.len(), 200, "{:?}", poll.failures.first());
        assert!(
            poll.readings.iter().all(|r| r.duty.unwrap().ratio < 0.05),
            "sleepers are idle"
        );
    }
    println!("one poll of 200 processes: {best:?}");
    assert!(best < Duration::from_millis(5), "best poll took {best:?}");
}
