//! The process: bind every listener (one SO_REUSEPORT socket per worker and address), start one
//! pinned worker thread per core and the health checker (`health::Checker`, when a member is
//! checked), serve the main thread's control channel (signals from the signal thread, reload
//! requests and state-file writes from the admin API, a finished binary upgrade) until
//! SIGTERM/SIGINT (after `stop_delay`) or an upgrade, stop them gracefully. Listening sockets come
//! from a running process (`handover`) where it handed them over, else are bound here.
//!
//! Owns: threads, listeners before they are handed over, signals. Must never: touch a worker's
//! state. Invariant: listeners are bound before any worker starts, so a bad address is reported
//! once, clearly, and the process exits non-zero.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::access_log;
use crate::board::Board;
use crate::config::Config;
use crate::handover::{Handover, Listening};
use crate::health::Checker;
use crate::reload::{self, Control, Source};
use crate::worker::{self, Role};
use std::sync::mpsc::Receiver;

/// A running server.
pub struct Server {
    stops: Vec<futures_channel::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The bound listen addresses (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    access_log: Option<access_log::Writer>,
    health: Option<Checker>,
    /// The TLS listeners' certificates (`None`: no TLS listener), reloaded on SIGHUP.
    tls: Option<Arc<crate::tls::TlsState>>,
    board: Arc<Board>,
    /// The file SIGHUP and the admin API reload (`None`: the demo, started without one).
    source: Option<Source>,
    /// Signals and reload requests for the main thread.
    control: Receiver<Control>,
    control_tx: std::sync::mpsc::Sender<Control>,
    /// Duplicates of the listening sockets, until `offer_upgrades` hands them to its thread.
    offered: Vec<Listening>,
    handover: Option<Handover>,
}

/// Binds one listening socket with SO_REUSEPORT, so each worker can have its own.
///
/// For port 0 the port is chosen without SO_REUSEPORT and the option set after the bind: a
/// port-0 bind with SO_REUSEPORT may be given a port another process of the same user already
/// listens on with SO_REUSEPORT, and the two would then share its connections.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.port() != 0 {
        socket.set_reuse_port(true)?;
    }
    // Accepted connections inherit it, so no connection needs a setsockopt of its own.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.set_reuse_port(true)?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The listening sockets of every worker, in `[[listen]]` order then the admin listener: those a
/// running process handed over (`inherited`, for addresses the configuration still has), else
/// new ones. Fills `addrs` with the proxy listeners' bound addresses.
type PerWorker = Vec<Vec<(std::net::TcpListener, Role)>>;

fn bind_all(
    config: &Config,
    mut inherited: Vec<Listening>,
    addrs: &mut Vec<SocketAddr>,
) -> anyhow::Result<PerWorker> {
    let workers = config.server.workers;
    let mut per_worker: PerWorker = (0..workers).map(|_| Vec::new()).collect();
    let admin = config.admin.as_ref().map(|a| (a.address, Role::Admin));
    let all = config
        .listen
        .iter()
        .enumerate()
        .map(|(i, l)| (l.address, Role::Proxy(i)))
        .chain(admin);
    for (addr, role) in all {
        // Sockets handed over for this listener: matched by address, wherever the listener now is
        // in the file (with port 0 in the file: by its place).
        let (mine, rest): (Vec<_>, Vec<_>) = inherited.into_iter().partition(|l| {
            let same_kind = matches!(
                (l.role, role),
                (Role::Proxy(_), Role::Proxy(_)) | (Role::Admin, Role::Admin)
            );
            same_kind
                && (l.addr == addr
                    || (addr.port() == 0 && l.role == role && l.addr.ip() == addr.ip()))
        });
        inherited = rest;
        let mut given: Vec<std::net::TcpListener> = mine
            .into_iter()
            .map(|l| std::net::TcpListener::from(l.fd))
            .collect();
        if given.is_empty() {
            given.push(
                bind_reuseport(addr)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
            );
        } else {
            tracing::info!(address = %addr, sockets = given.len(), "listening sockets taken over");
        }
        // Port 0 means "any": the other workers join the port the first one got.
        let bound = given[0].local_addr()?;
        match role {
            Role::Proxy(_) => addrs.push(bound),
            Role::Admin => tracing::info!("admin endpoint on http://{bound}/status"),
        }
        // Each worker takes one socket; workers beyond the handed-over ones join the group with
        // new ones, and more handed-over sockets than workers are shared out (none is left
        // without an accept).
        for list in per_worker.iter_mut().skip(given.len()) {
            let l = bind_reuseport(bound)
                .map_err(|e| anyhow::anyhow!("cannot listen on {bound}: {e}"))?;
            list.push((l, role));
        }
        for (i, l) in given.drain(..).enumerate() {
            per_worker[i % workers].push((l, role));
        }
    }
    for l in inherited {
        // A listener the new file no longer has: closed (its queued connections move to the
        // group's other sockets when tcp_migrate_req is on).
        tracing::info!(address = %l.addr, "a handed-over listener the configuration no longer has: closed");
    }
    Ok(per_worker)
}

/// Duplicates of every worker's listening sockets, described for a new process.
fn offer(per_worker: &PerWorker) -> anyhow::Result<Vec<Listening>> {
    let mut offered = Vec::new();
    for (worker, list) in per_worker.iter().enumerate() {
        for (l, role) in list {
            offered.push(Listening {
                role: *role,
                worker,
                addr: l.local_addr()?,
                fd: l.try_clone()?.into(),
            });
        }
    }
    Ok(offered)
}

/// Connections queued on a SO_REUSEPORT listener that closes are reset unless
/// `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14+), which moves them to another listener of the
/// group: turned on where ringlb may, said at start where it may not.
fn enable_migrate_req() {
    const PATH: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    match std::fs::read_to_string(PATH).map(|s| s.trim().to_string()) {
        Ok(v) if v == "1" => {}
        Ok(_) => match std::fs::write(PATH, "1") {
            Ok(()) => tracing::info!("set net.ipv4.tcp_migrate_req = 1: connections queued on a closing listener move to another (binary upgrade, listener changes)"),
            Err(e) => tracing::warn!("net.ipv4.tcp_migrate_req is 0 and cannot be set ({e}): connections queued on a listener that closes are reset (see docs/operations.md)"),
        },
        Err(e) => tracing::warn!("cannot read net.ipv4.tcp_migrate_req ({e}): connections queued on a listener that closes may be reset"),
    }
}

impl Server {
    /// Binds the listeners and starts the workers; returns once every worker is serving.
    pub fn start(
        mut config: Config,
        source: Option<Source>,
        inherited: Vec<Listening>,
    ) -> anyhow::Result<Server> {
        enable_migrate_req();
        let mut addrs = Vec::new();
        // Transparent huge pages keep memory resident in 2 MiB units: the pages freed by a burst of
        // connections stayed resident (about 0.4 KiB more per idle connection in scenario (e)),
        // and khugepaged's compaction can stall a worker. Opt out, for this process only.
        if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
            tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
        }
        let workers = config.server.workers;
        let per_worker = bind_all(&config, inherited, &mut addrs)?;
        // Duplicates of every listening socket, for a later binary upgrade (`handover`).
        let offered = match &config.server.upgrade_socket {
            Some(_) => offer(&per_worker)?,
            None => Vec::new(),
        };
        // Port 0 resolved: `redirect_https` names the TLS listener's real port.
        for (l, bound) in config.listen.iter_mut().zip(&addrs) {
            l.address = *bound;
        }
        let config = Arc::new(config);
        let tls = crate::tls::TlsState::start(&config).map_err(|e| anyhow::anyhow!(e))?;
        let upstream_tls = crate::tls::upstream::Upstreams::load(&config)
            .map_err(|e| anyhow::anyhow!("member TLS: {e}"))?;
        let board = Arc::new(Board::new(config.clone(), upstream_tls));
        restore_state(&board);
        let (control_tx, control) = std::sync::mpsc::channel();
        // Only a server started from a file can reload; the admin API says so otherwise.
        let reloads = source.as_ref().map(|_| control_tx.clone());
        let access_log = match &config.access_log {
            Some(path) => Some(access_log::Writer::start(path).map_err(|e| {
                anyhow::anyhow!("cannot open the access log {}: {e}", path.display())
            })?),
            None => None,
        };
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<&'static str, String>>();
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let (stop_tx, stop_rx) = futures_channel::oneshot::channel();
            stops.push(stop_tx);
            let config = config.clone();
            let board = board.clone();
            let tls = tls.clone();
            let control = reloads.clone();
            let log_tx = access_log.as_ref().map(access_log::Writer::sender);
            let ready = ready_tx.clone();
            let pin_to = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("ringlb-w{id}"))
                .spawn(move || {
                    if let Some(core_id) = pin_to {
                        core_affinity::set_for_current(core_id);
                    }
                    let rt = match worker::build_runtime(config.server.driver) {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(format!(
                                "worker {id}: cannot start the {:?} driver: {e}",
                                config.server.driver
                            )));
                            return;
                        }
                    };
                    let parking = match crate::park::Parking::new() {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = ready.send(Err(format!(
                                "worker {id}: cannot create the epoll set for idle connections: {e}"
                            )));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(worker::driver_name(&rt)));
                    rt.block_on(async move {
                        let core = crate::core::Core::new(id, board, log_tx, parking, tls, control);
                        let core = std::rc::Rc::new(core);
                        worker::run(core, listeners, stop_rx).await;
                    });
                })?;
            threads.push(thread);
        }
        drop(ready_tx);
        let mut driver = "";
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(d)) => driver = d,
                Ok(Err(e)) => anyhow::bail!(e),
                Err(_) => anyhow::bail!("a worker thread died while starting"),
            }
        }
        board.lock().driver = driver;
        let generation = board.lock().generation.clone();
        let health = Checker::start(&generation, board.clone())?;
        spawn_signal_thread(control_tx.clone())?;
        for a in &addrs {
            tracing::info!("listening on {a}");
        }
        warn_uneven_max_conns(&config);
        tracing::info!(workers, driver, "ringlb ready");
        Ok(Server {
            stops,
            threads,
            addrs,
            access_log,
            health,
            tls,
            board,
            source,
            control,
            control_tx,
            offered,
            handover: None,
        })
    }

    /// Listens on `[server] upgrade_socket` for a new binary to take the listening sockets
    /// (`handover`). Called once serving (after a takeover: once the old process let go).
    pub fn offer_upgrades(&mut self) -> anyhow::Result<()> {
        let config = self.board.lock().generation.config.clone();
        let Some(path) = &config.server.upgrade_socket else {
            return Ok(());
        };
        let offered = std::mem::take(&mut self.offered);
        let h = Handover::start(path, offered, self.control_tx.clone()).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on the upgrade socket {}: {e}",
                path.display()
            )
        })?;
        self.handover = Some(h);
        tracing::info!(path = %path.display(), "a new binary may take over: ringlb run --upgrade");
        Ok(())
    }

    /// Blocks until SIGTERM or SIGINT; SIGUSR1 reopens the access log (logrotate), SIGHUP and
    /// the admin API reload the configuration (`reload`; without a file, the certificates).
    pub fn wait_for_signal(&mut self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGUSR1};
        loop {
            let Ok(control) = self.control.recv() else {
                anyhow::bail!("the signal thread ended");
            };
            match control {
                Control::Signal(SIGHUP) => {
                    if let Err(e) = self.reload() {
                        reload::failed(&self.board, &e);
                    }
                }
                Control::SaveState => save_state(&self.board),
                Control::Upgraded => {
                    tracing::info!("upgraded: stopping, finishing requests in flight");
                    return Ok(());
                }
                Control::Reload(answer) => {
                    let result = self.reload();
                    if let Err(e) = &result {
                        reload::failed(&self.board, e);
                    }
                    let _ = answer.send(result);
                }
                Control::Signal(SIGUSR1) => {
                    if let Some(log) = &self.access_log {
                        log.reopen();
                        tracing::info!("reopening the access log");
                    }
                }
                Control::Signal(sig) => {
                    self.stop_delay();
                    tracing::info!(
                        signal = sig,
                        "stopping: no new connections, finishing requests in flight"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// `[server] stop_delay`: `/healthz` answers 503 while ringlb goes on serving, so that
    /// keepalived or a load balancer in front moves traffic away before the listeners close. A
    /// second SIGTERM/SIGINT ends the delay.
    fn stop_delay(&self) {
        let delay = self.board.lock().generation.config.server.stop_delay;
        if delay.is_zero() {
            return;
        }
        self.board.set_draining();
        tracing::info!(
            "draining: /healthz answers 503 for {delay:?}, then ringlb stops (SIGTERM again: now)"
        );
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let until = std::time::Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.control.recv_timeout(left) {
                Ok(Control::Signal(SIGTERM | SIGINT)) | Err(_) => return,
                Ok(Control::Signal(SIGUSR1)) => {
                    if let Some(log) = &self.access_log {
                        log.reopen();
                    }
                }
                Ok(Control::SaveState) => save_state(&self.board),
                // A reload waits for the next process; an admin caller is told so.
                Ok(Control::Reload(answer)) => {
                    let _ = answer.send(Err("stopping".into()));
                }
                Ok(_) => {}
            }
        }
    }

    /// Reloads the configuration file (and re-reads the certificates): the next generation
    /// (`reload::reload`), then a health checker for its members. Without a file (the demo), only
    /// the certificates.
    fn reload(&mut self) -> Result<u64, String> {
        let certificates = match &self.tls {
            Some(tls) => match tls.reload() {
                Ok(n) => {
                    tracing::info!(certificates = n, "TLS certificates reloaded");
                    true
                }
                Err(e) => {
                    return Err(format!(
                        "TLS certificates NOT reloaded, the loaded ones stay in use: {e}"
                    ))
                }
            },
            None => false,
        };
        let Some(source) = &self.source else {
            return match certificates {
                true => Ok(self.board.lock().generation.number),
                false => Err("started without a config file: nothing to reload".into()),
            };
        };
        let number = reload::reload(source, &self.board)?;
        // What the new file keeps of the admin changes (a changed member's file values win).
        save_state(&self.board);
        // The checks follow the new members; their results stay on the board by member place.
        if let Some(h) = self.health.take() {
            h.stop();
        }
        let generation = self.board.lock().generation.clone();
        match Checker::start(&generation, self.board.clone()) {
            Ok(h) => self.health = h,
            Err(e) => tracing::error!("reload: health checks NOT restarted: {e}"),
        }
        Ok(number)
    }

    /// Stops the health checks and accepting, lets requests in flight finish (up to the grace
    /// period), joins the threads.
    pub fn stop(self) {
        // First: its duplicates of the listening sockets must not outlive the workers' accepts.
        if let Some(h) = self.handover {
            h.stop();
        }
        drop(self.offered);
        if let Some(h) = self.health {
            h.stop();
        }
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(log) = self.access_log {
            log.finish();
        }
        tracing::info!("stopped");
    }
}

/// Applies the state file's admin changes at start (`state_file`). A state file that cannot be
/// read is logged and left alone: ringlb starts with the configuration file's values.
fn restore_state(board: &Board) {
    let generation = board.lock().generation.clone();
    let Some(path) = generation.config.state_file() else {
        return;
    };
    match crate::state_file::load(path) {
        Ok(entries) => {
            let n = crate::state_file::apply(&mut board.lock(), &entries);
            tracing::info!(path = %path.display(), members = n, "admin changes restored from the state file");
        }
        Err(e) => tracing::error!("{e}; starting with the configuration file's member states"),
    }
}

/// Writes the admin changes in effect to the state file, when one is configured.
fn save_state(board: &Board) {
    let (path, entries) = {
        let b = board.lock();
        let path = b
            .generation
            .config
            .state_file()
            .map(std::path::Path::to_path_buf);
        (path, crate::state_file::entries(&b))
    };
    if let Some(path) = path {
        if let Err(e) = crate::state_file::save(&path, entries) {
            tracing::error!("{e}");
        }
    }
}

/// Forwards SIGTERM, SIGINT, SIGHUP and SIGUSR1 to the main thread's control channel (a second
/// SIGTERM ends `stop_delay`); ends when the main thread no longer listens.
fn spawn_signal_thread(control: std::sync::mpsc::Sender<Control>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGHUP])?;
    std::thread::Builder::new()
        .name("ringlb-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if control.send(Control::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// `max_conns` is split among the workers (`ceil(max_conns / workers)` each): says so when that
/// lets more requests reach a member at once than the file's number.
fn warn_uneven_max_conns(config: &Config) {
    let workers = config.server.workers as u32;
    for b in &config.balancers {
        for m in &b.members {
            if let Some(max) = m.max_conns.filter(|max| max % workers != 0) {
                let each = u64::from(max.div_ceil(workers));
                tracing::warn!(balancer = %b.name, member = %m.url,
                    "max_conns = {max} is shared by {workers} workers as {each} each: up to {} \
                     requests may reach the member at once (use a multiple of the worker count)",
                    each * u64::from(workers));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_tcp_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
