//! Child processes of the demo: started from this same binary, stopped by SIGTERM (then SIGKILL
//! after a grace period), never left behind.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};

/// A running child; dropping it stops it.
#[derive(Debug)]
pub struct Process {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Process {
    /// Starts `framescale <args>` with stderr appended to `stderr_path` and stdout as `stdout`.
    pub fn start(
        name: &str,
        args: &[String],
        stderr_path: &Path,
        stdout: Stdio,
    ) -> anyhow::Result<Process> {
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        Process::start_program(&exe, name, args, stderr_path, stdout)
    }

    /// Starts `program <args>` with stderr appended to `stderr_path` and stdout as `stdout`.
    pub fn start_program(
        program: &Path,
        name: &str,
        args: &[String],
        stderr_path: &Path,
        stdout: Stdio,
    ) -> anyhow::Result<Process> {
        let stderr = File::create(stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Process {
            name: name.into(),
            child,
        })
    }

    /// Its PID.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout, once (when started with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM: the process stops accepting work and drains.
    pub fn terminate(&self) {
        if let Some(pid) = Pid::from_raw(self.child.id().cast_signed()) {
            let _ = kill_process(pid, Signal::TERM);
        }
    }

    /// SIGTERM, then waits up to `grace` for it to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(name = %self.name, "Did not stop within {grace:?} of SIGTERM: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the child binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `probe` is true, for at most `timeout`; the error names `what`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{what} was not ready within {timeout:?}")
}
