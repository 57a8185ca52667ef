//! The process: have every listener bound (`listeners`: one SO_REUSEPORT socket per worker and
//! address, taken from a running process where it handed them over), start one pinned worker
//! thread per core and the health checker (`health::Checker`, when a member is checked), serve the
//! main thread's control channel (signals from the signal thread, reload requests and state-file
//! writes from the admin API, a finished binary upgrade) until SIGTERM/SIGINT (after
//! `stop_delay`) or an upgrade, stop them gracefully. The open-file limit is raised first and
//! checked against the file at start and after each reload (`fd_limit`). A reload's steps, in
//! order: read the file, bind its new listeners, load its certificates, then publish (nothing
//! before the publication is visible to a request, except the certificates of listeners it
//! keeps).
//!
//! Owns: threads, signals, the order of a reload's steps. Must never: touch a worker's state.
//! Invariant: the listeners of the file ringlb starts with are bound before any worker starts, so
//! a bad address is reported once, clearly, and the process exits non-zero; a reload's are bound
//! before it is published, and a bad one fails the reload.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::access_log;
use crate::board::Board;
use crate::config::Config;
use crate::generation::ListenerSlots;
use crate::handover::{Handover, Listening, Offered};
use crate::health::Checker;
use crate::listeners::{enable_migrate_req, Listeners};
use crate::reload::{self, Control, Source};
use crate::sd_notify::{SdNotify, Watchdog, HEARTBEAT_STALE};
use crate::worker;
use std::sync::mpsc::Receiver;

/// A running server.
pub struct Server {
    stops: Vec<futures_channel::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The bound listen addresses (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    access_log: Option<access_log::Writer>,
    health: Option<Checker>,
    /// The TLS listeners' certificates, reloaded on SIGHUP.
    tls: Arc<crate::tls::TlsState>,
    board: Arc<Board>,
    /// The file SIGHUP and the admin API reload (`None`: the demo, started without one).
    source: Option<Source>,
    /// Signals and reload requests for the main thread.
    control: Receiver<Control>,
    control_tx: std::sync::mpsc::Sender<Control>,
    /// The proxy listeners: their slots, bound by a reload or closed (`listeners`).
    listeners: Listeners,
    /// Duplicates of the listening sockets for a new binary (`handover`; empty without an
    /// upgrade socket), shared with the handover thread and renewed by a reload.
    offered: Offered,
    handover: Option<Handover>,
}

impl Server {
    /// Binds the listeners and starts the workers; returns once every worker is serving.
    pub fn start(
        mut config: Config,
        source: Option<Source>,
        inherited: Vec<Listening>,
    ) -> anyhow::Result<Server> {
        let nofile = crate::fd_limit::raise();
        enable_migrate_req();
        // Transparent huge pages keep memory resident in 2 MiB units: the pages freed by a burst of
        // connections stayed resident (about 0.4 KiB more per idle connection in scenario (e)),
        // and khugepaged's compaction can stall a worker. Opt out, for this process only.
        if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
            tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
        }
        let workers = config.server.workers;
        // Port 0 is resolved in `config`: `redirect_https` names the TLS listener's real port.
        let (listeners, per_worker) = Listeners::start(&mut config, inherited)?;
        let addrs: Vec<SocketAddr> = config.listen.iter().map(|l| l.address).collect();
        let slots: Vec<usize> = (0..addrs.len()).collect();
        let offered = crate::handover::offer(listeners.offered(&slots));
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
                    let rt = match crate::runtime::build(config.server.driver) {
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
                    let _ = ready.send(Ok(crate::runtime::driver_name(&rt)));
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
        crate::fd_limit::check(&config, nofile);
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
            listeners,
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
        let h =
            Handover::start(path, self.offered.clone(), self.control_tx.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on the upgrade socket {}: {e}",
                    path.display()
                )
            })?;
        self.handover = Some(h);
        tracing::info!(path = %path.display(), "a new binary may take over: ringlb run --upgrade");
        Ok(())
    }

    /// What systemd's `STATUS=` says while serving.
    pub fn status_line(&self) -> String {
        let b = self.board.lock();
        format!(
            "serving: {} workers ({}), configuration generation {}",
            b.workers, b.driver, b.generation.number
        )
    }

    /// Blocks until SIGTERM or SIGINT; SIGUSR1 reopens the access log (logrotate), SIGHUP and
    /// the admin API reload the configuration (`reload`; without a file, the certificates).
    /// Meanwhile feeds systemd's watchdog while every core publishes (`sd_notify::Watchdog`) and
    /// tells systemd about reloads and the stop.
    pub fn wait_for_signal(&mut self, sd: &SdNotify) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGUSR1};
        use std::sync::mpsc::RecvTimeoutError;
        let mut watchdog = Watchdog::new(sd);
        loop {
            let control = match &mut watchdog {
                None => self.control.recv().ok(),
                Some(w) => {
                    w.feed_if_due(sd, |now| {
                        self.board.lock().heartbeats_fresh(now, HEARTBEAT_STALE)
                    });
                    match self.control.recv_timeout(w.left()) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let Some(control) = control else {
                anyhow::bail!("the signal thread ended");
            };
            match control {
                Control::Signal(SIGHUP) => {
                    let _ = self.reload_notified(sd);
                }
                Control::SaveState => save_state(&self.board),
                Control::Upgraded => {
                    sd.stopping();
                    tracing::info!("upgraded: stopping, finishing requests in flight");
                    return Ok(());
                }
                Control::Reload(answer) => {
                    let result = self.reload_notified(sd);
                    let _ = answer.send(result);
                }
                Control::Signal(SIGUSR1) => {
                    if let Some(log) = &self.access_log {
                        log.reopen();
                        tracing::info!("reopening the access log");
                    }
                }
                Control::Signal(sig) => {
                    sd.stopping();
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

    /// A reload (`reload`) with systemd told: `RELOADING=1` before, `READY=1` after, whatever
    /// the result (a failed reload leaves the running configuration serving); a failure counted.
    fn reload_notified(&mut self, sd: &SdNotify) -> Result<u64, String> {
        sd.reloading();
        let result = self.reload();
        if let Err(e) = &result {
            reload::failed(&self.board, e);
        }
        sd.ready(&self.status_line());
        result
    }

    /// Reloads the configuration file: the next generation (`reload::read`), its listeners bound
    /// or let go (`listeners`), its certificates loaded, then published (`reload::publish`) and a
    /// health checker started for its members. Without a file (the demo), only the certificates
    /// are read again.
    fn reload(&mut self) -> Result<u64, String> {
        let Some(source) = &self.source else {
            let config = self.board.lock().generation.config.clone();
            if config.listen.iter().all(|l| l.tls.is_none()) {
                return Err("started without a config file: nothing to reload".into());
            }
            let n = self.tls.reload().map_err(not_reloaded)?;
            tracing::info!(certificates = n, "TLS certificates reloaded");
            return Ok(self.board.lock().generation.number);
        };
        let mut next = reload::read(source, &self.board)?;
        let member_tls =
            crate::tls::upstream::Upstreams::load(&next).map_err(|e| format!("member TLS: {e}"))?;
        let plan = self.listeners.plan(&mut next)?;
        let slots = plan.slots.clone();
        let mut by_slot = vec![None; slots.iter().max().map_or(0, |m| m + 1)];
        for (l, &slot) in next.listen.iter().zip(&slots) {
            by_slot[slot] = l.tls.clone();
        }
        // The last step that may fail: from here the new file is put in effect whole.
        let n = self.tls.replace(by_slot, &slots).map_err(not_reloaded)?;
        if n > 0 {
            tracing::info!(certificates = n, "TLS certificates reloaded");
        }
        let sockets = self.listeners.commit(plan, &next);
        // Before the workers close a removed listener's sockets: no duplicate may keep one open.
        *crate::handover::lock(&self.offered) = self.listeners.offered(&slots);
        let listeners = ListenerSlots {
            slots,
            removed: self.listeners.removed(),
        };
        let number = reload::publish(&self.board, next, member_tls, listeners, sockets);
        // What the new file keeps of the admin changes (a changed member's file values win).
        save_state(&self.board);
        // The checks follow the new members; their results stay on the board by member place.
        if let Some(h) = self.health.take() {
            h.stop();
        }
        let generation = self.board.lock().generation.clone();
        crate::fd_limit::check(&generation.config, crate::fd_limit::current());
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
        crate::handover::lock(&self.offered).clear();
        drop(self.listeners);
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

fn not_reloaded(e: String) -> String {
    format!("TLS certificates NOT reloaded, the loaded ones stay in use: {e}")
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
