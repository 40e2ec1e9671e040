//! Child processes that cannot outlive the process that started them.
//!
//! Each child runs in its own process group (so a stop reaches everything it forked) with
//! `PR_SET_PDEATHSIG=SIGKILL`. The parent-death signal fires when the *thread* that forked the
//! child exits, so every child is forked from one dedicated thread that lives as long as the
//! process: when the test binary exits, panics out or is killed by Ctrl-C, its children die too.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::Error;

/// A running child process with its output in a log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        // The thread never ends: the sender lives in a static, so `rx` never closes.
        let spawned = std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = spawned {
            panic!("testenv: cannot start the process-spawner thread: {e}");
        }
        tx
    })
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(format!("cannot open log file {}", log.display())))?;
        let stderr = file
            .try_clone()
            .map_err(Error::io(format!("cannot open log file {}", log.display())))?;
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe libc
        // functions (setpgid, prctl, getppid, kill); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then die right away.
                if libc::getppid() as u32 != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let program = command.get_program().to_string_lossy().into_owned();
        spawner()
            .send((command, reply_tx))
            .map_err(|_| Error::Startup("testenv: the process-spawner thread is gone".into()))?;
        let child = reply_rx
            .recv()
            .map_err(|_| Error::Startup("testenv: the process-spawner thread is gone".into()))?
            .map_err(Error::io(format!("cannot start {name} ({program})")))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    /// The component's name, e.g. "etcd".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id (also its process-group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// The last `max_lines` lines of its log.
    pub fn log_tail(&self, max_lines: usize) -> String {
        tail(&self.log, max_lines)
    }

    /// SIGTERM to the process group, SIGKILL after `grace`, then reap.
    pub fn stop(&mut self, grace: Duration) {
        if self.exit_status().is_some() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exit_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL to the process group and reap: an unclean crash, like `kill -9`.
    pub fn kill(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        self.signal_group(libc::SIGKILL);
        self.exited = self.child.wait().ok();
    }

    /// SIGSTOP: the process freezes (like a stalled node or a long GC pause) but keeps its
    /// state, for tests of what it does when it wakes up.
    pub fn pause(&self) {
        self.signal_group(libc::SIGSTOP);
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&self) {
        self.signal_group(libc::SIGCONT);
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals the process group we created in pre_exec.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `max_lines` lines of a file (reads at most the last 64 KiB).
pub fn tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let mut text = String::new();
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    text.push_str(&String::from_utf8_lossy(&bytes));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// A currently free TCP port on 127.0.0.1. Racy by nature (another process may take it before
/// we use it); callers retry a component whose log says the address is in use.
pub fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io("cannot find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("cannot find a free port"))?
        .port();
    Ok(port)
}

/// Pids of the processes in process group `pgid` that are still running (zombies excluded,
/// since an orphan may wait for a PID 1 that never reaps it).
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") {
            pids.push(pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_whole_process_group() {
        let dir = std::env::temp_dir().join(format!("testenv-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sleep.log");
        let mut command = Command::new("sh");
        // The shell forks a grandchild; stopping the group must end it too.
        command.args(["-c", "sleep 300 & echo started; wait"]);
        let mut process = Process::spawn("sleeper", command, &log).unwrap();
        let pgid = process.pid();
        std::thread::sleep(Duration::from_millis(300));
        assert!(process.exit_status().is_none());
        process.stop(Duration::from_secs(2));
        assert!(process.exit_status().is_some());
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            live_group_members(pgid).is_empty(),
            "a process of group {pgid} survived stop()"
        );
        assert!(process.log_tail(5).contains("started"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_returns_last_lines() {
        let dir = std::env::temp_dir().join(format!("testenv-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
