//! Starts the real `ringlb` binary on an ephemeral loopback port and stops it when dropped.
//!
//! The io driver comes from `RINGLB_TEST_DRIVER` (io_uring by default; the test script runs the
//! suite once more with epoll). The binary is cargo's build of this source, or
//! `RINGLB_TEST_BIN` when set (the profile-guided build of `scripts/pgo.sh`, tested by hand:
//! docs/packaging.md).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Ringlb {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Every proxy listener's address, in `[[listen]]` order (`addr` is the first).
    pub addrs: Vec<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    /// The config file it runs with.
    config_path: std::path::PathBuf,
    workers: usize,
    /// Removed on drop (`None`: a process that shares another's, see `upgrade`).
    _dir: Option<TempDir>,
}

/// The ringlb binary the tests start: `RINGLB_TEST_BIN`, or cargo's build of it.
pub fn ringlb_bin() -> std::ffi::OsString {
    std::env::var_os("RINGLB_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ringlb").into())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("ringlb-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The driver the tests run ringlb with. When io_uring is asked for but this kernel (or a seccomp
/// profile) refuses it, the tests fail (`unavailable`); a run that allows missing tools runs
/// them on epoll instead, saying so loudly.
pub fn driver() -> String {
    static DRIVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let wanted = std::env::var("RINGLB_TEST_DRIVER").unwrap_or_else(|_| "io_uring".into());
            if wanted == "io_uring" {
                if let Err(e) = ringlb::runtime::build(ringlb::config::Driver::IoUring) {
                    super::admin::unavailable(&format!("io_uring ({e})"));
                    return "epoll".into();
                }
            }
            wanted
        })
        .clone()
}

/// A config with one balancer "app" over `members` (TOML inline tables), routed at "/".
pub fn simple_config(members: &[String], balancer_extra: &str) -> String {
    format!(
        "[[balancer]]\nname = \"app\"\n{balancer_extra}\nmembers = [{}]\n\n[[route]]\npath = \"/\"\nbalancer = \"app\"\n",
        members.join(", ")
    )
}

/// Two balancers of one member each, routed at `/public` (member `public`) and `/admin`.
pub fn public_and_admin(public: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "[[balancer]]\nname = \"pub\"\nmembers = [{}]\n[[balancer]]\nname = \"adm\"\nmembers = [{}]\n\
[[route]]\npath = \"/public\"\nbalancer = \"pub\"\n\
[[route]]\npath = \"/admin\"\nbalancer = \"adm\"\n",
        member(public),
        member(admin)
    )
}

/// An inline member table for an address.
pub fn member(addr: SocketAddr) -> String {
    format!("{{ url = \"http://{addr}\" }}")
}

impl Ringlb {
    /// Starts ringlb with `body` (everything but `[[listen]]`) and `workers` workers.
    pub fn start(body: &str, workers: usize) -> Ringlb {
        Self::try_start(body, workers).unwrap_or_else(|e| panic!("ringlb did not start: {e}"))
    }

    pub fn try_start(body: &str, workers: usize) -> Result<Ringlb, String> {
        let (dir, path) = Self::config_file(body);
        Self::spawn(path, workers, &[], Some(dir), None)
    }

    /// As `start`, with the open-file limit set to `(soft, hard)` for the process.
    pub fn start_with_nofile(body: &str, workers: usize, nofile: (u64, u64)) -> Ringlb {
        let (dir, path) = Self::config_file(body);
        Self::spawn(path, workers, &[], Some(dir), Some(nofile))
            .unwrap_or_else(|e| panic!("ringlb did not start: {e}"))
    }

    /// A config file in a new temporary directory: one loopback listener on an ephemeral port,
    /// then `body`.
    fn config_file(body: &str) -> (TempDir, std::path::PathBuf) {
        let dir = TempDir::new();
        let path = dir.0.join("ringlb.toml");
        std::fs::write(
            &path,
            format!("[[listen]]\naddress = \"127.0.0.1:0\"\n\n{body}"),
        )
        .unwrap();
        (dir, path)
    }

    /// Starts ringlb with `whole` as its config file (`[[listen]]` included).
    pub fn start_whole(whole: &str, workers: usize) -> Ringlb {
        let dir = TempDir::new();
        let path = dir.0.join("ringlb.toml");
        std::fs::write(&path, whole).unwrap();
        Self::spawn(path, workers, &[], Some(dir), None)
            .unwrap_or_else(|e| panic!("ringlb did not start: {e}"))
    }

    /// A new process with this one's config file and `--upgrade`: it takes this one's listening
    /// sockets (binary upgrade); returns once it is ready.
    pub fn upgrade(&self) -> Result<Ringlb, String> {
        Self::spawn(
            self.config_path.clone(),
            self.workers,
            &["--upgrade"],
            None,
            None,
        )
    }

    fn spawn(
        path: std::path::PathBuf,
        workers: usize,
        extra: &[&str],
        dir: Option<TempDir>,
        nofile: Option<(u64, u64)>,
    ) -> Result<Ringlb, String> {
        let mut cmd = Command::new(ringlb_bin());
        if let Some((soft, hard)) = nofile {
            use rustix::process::{setrlimit, Resource, Rlimit};
            use std::os::unix::process::CommandExt;
            let limit = Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            };
            // SAFETY: between fork and exec, only a system call (no allocation, no lock).
            unsafe {
                cmd.pre_exec(move || setrlimit(Resource::Nofile, limit).map_err(Into::into));
            }
        }
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .args(extra)
            .args([
                "--workers",
                &workers.to_string(),
                "--driver",
                &driver(),
                "--log-level",
                "debug",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut addrs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.split("listening on ").nth(1) {
                        addrs.extend(a.trim().parse::<SocketAddr>().ok());
                    }
                    if line.contains("ringlb ready") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no ready line; logs: {:?}", logs.lock().unwrap()));
                }
            }
        }
        Ok(Ringlb {
            child: Some(child),
            addr: *addrs.first().ok_or("no listening line")?,
            addrs,
            logs,
            config_path: path,
            workers,
            _dir: dir,
        })
    }

    /// Rewrites the config file with `body` (everything but `[[listen]]`, as at start), for a
    /// reload.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(
            &self.config_path,
            format!("[[listen]]\naddress = \"127.0.0.1:0\"\n\n{body}\n"),
        )
        .unwrap();
    }

    /// Rewrites the config file with `whole` (`[[listen]]` included), for a reload.
    pub fn write_config(&self, whole: &str) {
        std::fs::write(&self.config_path, whole).unwrap();
    }

    /// The admin listener's address, when the config has `[admin]`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.logs()
            .iter()
            .find_map(|l| l.split("admin endpoint on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("an admin endpoint line in the logs")
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (bounded) until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits (bounded) for the process to exit on its own; its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// Sends a signal with the `kill` command (keeps the tests free of unsafe code).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Ringlb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Let the reader thread catch up with what ringlb printed last.
            std::thread::sleep(Duration::from_millis(300));
            eprintln!("--- ringlb logs ---\n{}\n---", self.logs().join("\n"));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the ringlb binary with arguments and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ringlb_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
