//! systemd's service notification protocol (`sd_notify(3)`), hand-written on std: one datagram
//! per state change to the socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). Tells the service manager when ringlb is ready (`READY=1`), reloading
//! (`RELOADING=1` with `MONOTONIC_USEC`, as systemd 253+ wants it), stopping (`STOPPING=1`), a
//! status line, and feeds the watchdog (`WATCHDOG=1`, `WATCHDOG_USEC`/`WATCHDOG_PID`).
//!
//! Owns: reading those variables (once, on the main thread at start) and the wire format. Must
//! never: block or fail the process (a send that fails is logged at debug level and
//! forgotten: ringlb serves the same with or without systemd), do anything when `NOTIFY_SOCKET`
//! is unset, or be used from a worker (the main thread decides when to feed the watchdog, from the
//! cores' once-a-second heartbeats on the board: `Board::heartbeats_fresh`).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// How a core's heartbeat may be old before the watchdog is no longer fed (cores publish once a
/// second; a core that missed five publications is stuck).
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(5);

/// The notification socket, when systemd gave one; every method does nothing without it.
#[derive(Default)]
pub struct SdNotify {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl SdNotify {
    /// From the process environment: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`.
    pub fn from_env() -> SdNotify {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let Some(socket) = socket else {
            return SdNotify::default();
        };
        match SdNotify::connect(&socket) {
            Ok(mut n) => {
                n.watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
                n
            }
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={socket}: {e}; systemd will not be told the state");
                SdNotify::default()
            }
        }
    }

    /// A notifier for `socket` (`/path` or `@abstract`), without a watchdog.
    pub fn connect(socket: &str) -> io::Result<SdNotify> {
        let addr = address(socket)?;
        let sock = UnixDatagram::unbound()?;
        Ok(SdNotify {
            target: Some((sock, addr)),
            watchdog: None,
        })
    }

    /// Sets the watchdog interval (what `WATCHDOG_USEC` says); for tests.
    pub fn with_watchdog(mut self, interval: Option<Duration>) -> SdNotify {
        self.watchdog = interval;
        self
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// `WatchdogSec=` of the unit, when the watchdog is on for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some((sock, addr)) = &self.target else {
            return Ok(());
        };
        sock.send_to_addr(state.as_bytes(), addr).map(|_| ())
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::debug!("sd_notify {:?}: {e}", state.lines().next().unwrap_or(""));
        }
    }

    /// Serving: the listeners are bound and every worker runs.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload starts (`READY=1` follows when it is over, whatever its result).
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send_logged(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration"
        ));
    }

    /// The process stops (finishing requests in flight).
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1\nSTATUS=stopping, finishing requests in flight");
    }

    /// Feeds the watchdog; the caller checks first that every core is alive.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// A free-form status line (`systemctl status` shows it).
    pub fn status(&self, text: &str) {
        self.send_logged(&format!("STATUS={}", one_line(text)));
    }
}

/// When to feed the watchdog: every half interval, and only while every core is alive.
pub struct Watchdog {
    every: Duration,
    next: std::time::Instant,
    /// Whether the last turn found a stale core (logged once per episode).
    starving: bool,
}

impl Watchdog {
    /// For `sd`'s watchdog interval; `None` when the watchdog is off.
    pub fn new(sd: &SdNotify) -> Option<Watchdog> {
        let interval = sd.watchdog_interval()?;
        Some(Watchdog {
            every: interval / 2,
            next: std::time::Instant::now(),
            starving: false,
        })
    }

    /// How long the main thread may wait for its next message before `feed_if_due`.
    pub fn left(&self) -> Duration {
        self.next
            .saturating_duration_since(std::time::Instant::now())
    }

    /// Sends `WATCHDOG=1` when due and `alive(now)` says every core's tick beat recently; when a
    /// core did not, says so and sends nothing (systemd then restarts the service once
    /// `WatchdogSec` passes).
    pub fn feed_if_due(&mut self, sd: &SdNotify, alive: impl FnOnce(std::time::Instant) -> bool) {
        let now = std::time::Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        if alive(now) {
            if self.starving {
                tracing::warn!("every core publishes again: feeding the systemd watchdog");
            }
            self.starving = false;
            sd.watchdog();
        } else if !self.starving {
            self.starving = true;
            tracing::error!(
                "a worker core's tick has not run for {HEARTBEAT_STALE:?}: not feeding the systemd \
                 watchdog (systemd restarts ringlb when WatchdogSec passes)"
            );
        }
    }
}

/// The socket address `NOTIFY_SOCKET` names: an absolute path, or `@name` (abstract namespace).
fn address(socket: &str) -> io::Result<SocketAddr> {
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes());
    }
    if !socket.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name (@...)",
        ));
    }
    SocketAddr::from_pathname(socket)
}

/// The watchdog interval from `WATCHDOG_USEC`, when it is meant for `my_pid` (`WATCHDOG_PID`
/// absent or equal); `None` when off, zero or unreadable.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// CLOCK_MONOTONIC in microseconds (what `MONOTONIC_USEC` carries).
fn monotonic_usec() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000 + t.tv_nsec as u128 / 1_000
}

/// A status text as one line (a newline would start another `KEY=VALUE`).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(path: &std::path::Path) -> UnixDatagram {
        let _ = std::fs::remove_file(path);
        let r = UnixDatagram::bind(path).unwrap();
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        r
    }

    fn recv(r: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = r.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ringlb-sd-{}-{name}", std::process::id()))
    }

    #[test]
    fn sends_each_state_to_a_path_socket() {
        let path = temp_path("path");
        let r = receiver(&path);
        let n = SdNotify::connect(path.to_str().unwrap()).unwrap();
        assert!(n.is_active());
        n.ready("serving\non 2 cores");
        assert_eq!(recv(&r), "READY=1\nSTATUS=serving on 2 cores");
        n.reloading();
        let msg = recv(&r);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u128 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC")
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= monotonic_usec());
        n.watchdog();
        assert_eq!(recv(&r), "WATCHDOG=1");
        n.stopping();
        assert!(recv(&r).starts_with("STOPPING=1\n"));
        n.status("generation 2");
        assert_eq!(recv(&r), "STATUS=generation 2");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringlb-sd-test-{}", std::process::id());
        let r = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = SdNotify::connect(&format!("@{name}")).unwrap();
        n.ready("ok");
        assert_eq!(recv(&r), "READY=1\nSTATUS=ok");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = SdNotify::default();
        assert!(!n.is_active());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("x");
        n.send("READY=1").unwrap();
    }

    #[test]
    fn a_relative_socket_path_is_refused() {
        assert!(SdNotify::connect("run/notify").is_err());
        assert!(SdNotify::connect("").is_err());
    }

    #[test]
    fn a_socket_nobody_listens_on_fails_the_send_not_the_process() {
        let n = SdNotify::connect(temp_path("nobody").to_str().unwrap()).unwrap();
        assert!(n.send("READY=1").is_err());
        n.ready("still fine");
    }

    #[test]
    fn the_watchdog_is_fed_only_while_every_core_is_alive() {
        let path = temp_path("watchdog");
        let r = receiver(&path);
        r.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let sd = SdNotify::connect(path.to_str().unwrap())
            .unwrap()
            .with_watchdog(Some(Duration::from_secs(2)));
        let mut w = Watchdog::new(&sd).expect("watchdog on");
        assert_eq!(w.every, Duration::from_secs(1));
        // Due at once; a stuck core: nothing sent.
        w.feed_if_due(&sd, |_| false);
        let mut buf = [0u8; 64];
        assert!(r.recv(&mut buf).is_err(), "no WATCHDOG=1 with a stale core");
        // Not due again before `every`, whatever the cores say.
        w.feed_if_due(&sd, |_| true);
        assert!(r.recv(&mut buf).is_err(), "not due yet");
        assert!(w.left() > Duration::from_millis(500));
        // Due, every core alive: fed.
        w.next = std::time::Instant::now();
        w.feed_if_due(&sd, |_| true);
        assert_eq!(recv(&r), "WATCHDOG=1");
        assert!(!w.starving);
        assert!(Watchdog::new(&SdNotify::default()).is_none());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_watchdog_is_for_this_pid_only() {
        let s = Some(Duration::from_secs(30));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), s);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), s);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        // Without a socket the watchdog is off whatever the variables say.
        assert_eq!(
            SdNotify::default().with_watchdog(s).watchdog_interval(),
            None
        );
    }
}
