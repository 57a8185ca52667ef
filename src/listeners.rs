//! The listening sockets, on the main thread: one SO_REUSEPORT socket per worker and address,
//! bound at start or taken over from a running process (`handover`), and bound or let go when a
//! reload adds or removes a `[[listen]]`. Each proxy listener has a slot, kept across reloads
//! (identity: the address as written and, for the same address written twice with port 0, its
//! occurrence), so that its sockets stay open, and a connection's `Client::listener` keeps naming
//! it, while the file changes around it.
//!
//! Owns: binding, the listening sockets' options (SO_REUSEPORT, TCP_NODELAY for what they
//! accept, TCP_DEFER_ACCEPT), the slot registry, each open slot's bound address, the last settings
//! of removed listeners (their last connections are answered with them), and (with an upgrade
//! socket) duplicates of every worker's sockets for a new binary. Must never: close a socket a
//! worker accepts on (a worker closes its own when its generation no longer has the slot,
//! `worker`), keep a duplicate of a listener the configuration no longer has (the kernel would go
//! on queueing connections on it that nobody accepts), or reuse a slot for another identity.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, ListenConfig};
use crate::handover::Listening;
use crate::worker::Role;

/// Each worker's listening sockets: `Role::Proxy(slot)`, then the admin listener.
pub type PerWorker = Vec<Vec<(std::net::TcpListener, Role)>>;

/// Binds one listening socket with SO_REUSEPORT, so each worker can have its own, and with
/// TCP_NODELAY (inherited by what it accepts) and `TCP_DEFER_ACCEPT` (`defer_accept`).
///
/// For port 0 the port is chosen without SO_REUSEPORT and the option set after the bind: a
/// port-0 bind with SO_REUSEPORT may be given a port another process of the same user already
/// listens on with SO_REUSEPORT, and the two would then share its connections.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.port() != 0 {
        socket.set_reuse_port(true)?;
    }
    // Accepted connections inherit it, so no connection needs a setsockopt of its own.
    socket.set_tcp_nodelay(true)?;
    defer_accept(&socket)?;
    socket.bind(&addr.into())?;
    socket.set_reuse_port(true)?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// How long the kernel holds a new connection that has sent nothing before handing it over
/// anyway (`TCP_DEFER_ACCEPT`, in seconds; Linux rounds it to one SYN-ACK retransmission, so a
/// silent client is accepted after about a second and `header_timeout` then applies).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Sets `TCP_DEFER_ACCEPT`: a connection is queued for `accept` only once its first bytes arrived
/// (every protocol ringlb listens for, HTTP, TLS and the PROXY header, starts with the client), so
/// the connection's first receive finds them, and a connection that stays silent takes no task
/// until it sends, closes, or `DEFER_ACCEPT_SECS` pass. Apache's default `AcceptFilter http data`
/// and nginx's `listen … deferred` set the same option.
#[allow(unsafe_code)]
fn defer_accept(socket: impl std::os::fd::AsFd) -> std::io::Result<()> {
    let secs = DEFER_ACCEPT_SECS;
    // SAFETY: a valid descriptor (borrowed for the call), and a pointer to a live c_int with its
    // true length; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd()),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            std::mem::size_of_val(&secs) as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One socket per worker at `addr`: those `given` (handed over), then new ones in the same group
/// (port 0: the port the first one got). More given than workers are shared out, so none is left
/// without an accept. Returns the bound address and each worker's sockets.
fn bind_group(
    addr: SocketAddr,
    mut given: Vec<std::net::TcpListener>,
    workers: usize,
) -> Result<(SocketAddr, Vec<Vec<std::net::TcpListener>>), String> {
    let cannot = |a: SocketAddr, e: std::io::Error| format!("cannot listen on {a}: {e}");
    // Handed over by a ringlb that may not have set it.
    for l in &given {
        defer_accept(l).map_err(|e| cannot(addr, e))?;
    }
    if given.is_empty() {
        given.push(bind_reuseport(addr).map_err(|e| cannot(addr, e))?);
    }
    let bound = given[0].local_addr().map_err(|e| cannot(addr, e))?;
    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for list in per_worker.iter_mut().skip(given.len()) {
        list.push(bind_reuseport(bound).map_err(|e| cannot(bound, e))?);
    }
    for (i, l) in given.into_iter().enumerate() {
        per_worker[i % workers].push(l);
    }
    Ok((bound, per_worker))
}

/// An open proxy listener.
struct Open {
    bound: SocketAddr,
    /// Per worker, duplicates of its sockets (only with an upgrade socket).
    dups: Vec<(usize, OwnedFd)>,
}

/// What a reload's listeners come to, before it is committed (`Listeners::commit`).
pub struct Plan {
    /// The slot of each `[[listen]]` of the new file.
    pub slots: Vec<usize>,
    /// Per worker, the sockets of the listeners it adds.
    sockets: Vec<Vec<(usize, std::net::TcpListener)>>,
    added: Vec<(usize, Open)>,
}

/// The proxy listeners' slots and open sockets, and the admin listener's duplicates.
pub struct Listeners {
    workers: usize,
    /// Keep duplicates for a binary upgrade (`[server] upgrade_socket` is set).
    keep_dups: bool,
    /// Every identity ever given a slot, in slot order: the address as written, its occurrence.
    ids: Vec<(SocketAddr, usize)>,
    /// By slot; `None` once closed (or never opened: a reload that failed).
    open: Vec<Option<Open>>,
    /// By slot, the settings it was last opened with (those of a removed listener still serve
    /// its last connections' last answers: `removed`).
    last: Vec<Option<ListenConfig>>,
    admin: Vec<Listening>,
    admin_bound: Option<SocketAddr>,
}

impl Listeners {
    /// Binds every listener of `config` (taking the sockets a running process handed over, by
    /// address; with port 0 in the file, by place), resolves port 0 in `config.listen` and returns
    /// each worker's sockets. The `[[listen]]` at index i gets slot i.
    pub fn start(
        config: &mut Config,
        mut inherited: Vec<Listening>,
    ) -> anyhow::Result<(Listeners, PerWorker)> {
        let workers = config.server.workers;
        let keep_dups = config.server.upgrade_socket.is_some();
        let mut me = Listeners {
            workers,
            keep_dups,
            ids: Vec::new(),
            open: Vec::new(),
            last: config.listen.iter().cloned().map(Some).collect(),
            admin: Vec::new(),
            admin_bound: None,
        };
        let mut per_worker: PerWorker = (0..workers).map(|_| Vec::new()).collect();
        let admin = config.admin.as_ref().map(|a| (a.address, Role::Admin));
        // Identities as written, before port 0 is resolved below.
        me.ids = (0..config.listen.len())
            .map(|i| (config.listen[i].address, occurrence(config, i)))
            .collect();
        let proxies = config.listen.iter().enumerate();
        let all: Vec<_> = proxies
            .map(|(i, l)| (l.address, Role::Proxy(i)))
            .chain(admin)
            .collect();
        for (addr, role) in all {
            let (mine, rest) = take_inherited(inherited, addr, role);
            inherited = rest;
            if !mine.is_empty() {
                tracing::info!(address = %addr, sockets = mine.len(), "listening sockets taken over");
            }
            let (bound, sockets) = bind_group(addr, mine, workers).map_err(anyhow::Error::msg)?;
            let dups = me.dups(&sockets)?;
            match role {
                Role::Proxy(i) => {
                    me.open.push(Some(Open { bound, dups }));
                    config.listen[i].address = bound;
                }
                Role::Admin => {
                    tracing::info!("admin endpoint on http://{bound}/status");
                    me.admin_bound = Some(bound);
                    me.admin = dups
                        .into_iter()
                        .map(|(worker, fd)| Listening {
                            role,
                            worker,
                            addr: bound,
                            fd,
                        })
                        .collect();
                }
            }
            for (worker, list) in sockets.into_iter().enumerate() {
                per_worker[worker].extend(list.into_iter().map(|l| (l, role)));
            }
        }
        for (last, l) in me.last.iter_mut().zip(&config.listen) {
            *last = Some(l.clone());
        }
        for l in inherited {
            // A listener the new file no longer has: closed (its queued connections move to the
            // group's other sockets when tcp_migrate_req is on).
            tracing::info!(address = %l.addr, "a handed-over listener the configuration no longer has: closed");
        }
        Ok((me, per_worker))
    }

    /// The slots of `next`'s listeners, binding the ones the running process does not have. On
    /// error (an address that cannot be bound, or one another listener has) no listener changes:
    /// the sockets bound so far close (an identity seen for the first time keeps the slot it was
    /// given). Resolves port 0 in `next.listen` (a kept listener keeps its port).
    pub fn plan(&mut self, next: &mut Config) -> Result<Plan, String> {
        let mut plan = Plan {
            slots: Vec::new(),
            sockets: (0..self.workers).map(|_| Vec::new()).collect(),
            added: Vec::new(),
        };
        for i in 0..next.listen.len() {
            let id = (next.listen[i].address, occurrence(next, i));
            let slot = match self.ids.iter().position(|k| *k == id) {
                Some(s) => s,
                None => {
                    self.ids.push(id);
                    self.open.push(None);
                    self.ids.len() - 1
                }
            };
            plan.slots.push(slot);
            if let Some(open) = &self.open[slot] {
                next.listen[i].address = open.bound;
                continue;
            }
            // SO_REUSEPORT would let a new socket join another listener's group (a port that
            // was 0 in the file, or the admin listener's): the two would share connections.
            let taken = self
                .open
                .iter()
                .flatten()
                .map(|o| o.bound)
                .chain(self.admin_bound);
            if let Some(a) = taken.into_iter().find(|a| *a == id.0) {
                return Err(format!(
                    "cannot listen on {a}: another ringlb listener has it"
                ));
            }
            let (bound, sockets) = bind_group(id.0, Vec::new(), self.workers)?;
            let dups = self.dups(&sockets).map_err(|e| e.to_string())?;
            for (worker, list) in sockets.into_iter().enumerate() {
                plan.sockets[worker].extend(list.into_iter().map(|l| (slot, l)));
            }
            plan.added.push((slot, Open { bound, dups }));
            next.listen[i].address = bound;
        }
        Ok(plan)
    }

    /// Puts `plan` (made for `next`) in effect here: its new listeners open, the ones it no longer
    /// has closed (only this thread's duplicates: each worker closes its own sockets when it runs
    /// a generation without them). Returns each worker's new sockets, for the board.
    pub fn commit(
        &mut self,
        plan: Plan,
        next: &Config,
    ) -> Vec<Vec<(usize, std::net::TcpListener)>> {
        self.last.resize(self.ids.len(), None);
        for (&slot, l) in plan.slots.iter().zip(&next.listen) {
            self.last[slot] = Some(l.clone());
        }
        for (slot, open) in self.open.iter_mut().enumerate() {
            if open.is_some() && !plan.slots.contains(&slot) {
                let bound = open.take().map(|o| o.bound);
                tracing::info!(address = ?bound, "listener removed by the reload: closing");
            }
        }
        for (slot, open) in plan.added {
            tracing::info!(address = %open.bound, "listener added by the reload");
            self.open[slot] = Some(open);
        }
        plan.sockets
    }

    /// The last settings of every listener a reload removed, by slot: its connections still get
    /// their last answer as it would have given it (`CoreGen::listen`).
    pub fn removed(&self) -> Vec<(usize, ListenConfig)> {
        let closed = self.open.iter().zip(&self.last).enumerate();
        closed
            .filter_map(|(slot, (open, last))| match (open, last) {
                (None, Some(l)) => Some((slot, l.clone())),
                _ => None,
            })
            .collect()
    }

    /// Duplicates of every socket for a new binary (`handover`), described by `[[listen]]` index
    /// (`slots`: the slot of each) and worker. Empty without an upgrade socket.
    pub fn offered(&self, slots: &[usize]) -> Vec<Listening> {
        let mut out = Vec::new();
        for (i, &slot) in slots.iter().enumerate() {
            let Some(open) = &self.open[slot] else {
                continue;
            };
            for (worker, fd) in &open.dups {
                if let Ok(fd) = fd.try_clone() {
                    let (role, addr) = (Role::Proxy(i), open.bound);
                    out.push(Listening {
                        role,
                        worker: *worker,
                        addr,
                        fd,
                    });
                }
            }
        }
        for l in &self.admin {
            if let Ok(fd) = l.fd.try_clone() {
                out.push(Listening { fd, ..*l });
            }
        }
        out
    }

    fn dups(
        &self,
        per_worker: &[Vec<std::net::TcpListener>],
    ) -> anyhow::Result<Vec<(usize, OwnedFd)>> {
        let mut dups = Vec::new();
        if self.keep_dups {
            for (worker, list) in per_worker.iter().enumerate() {
                for l in list {
                    dups.push((worker, l.try_clone()?.into()));
                }
            }
        }
        Ok(dups)
    }
}

/// Which occurrence of its address the `[[listen]]` at `i` is.
fn occurrence(config: &Config, i: usize) -> usize {
    let addr = config.listen[i].address;
    config.listen[..i]
        .iter()
        .filter(|l| l.address == addr)
        .count()
}

/// Splits `inherited` into the sockets for the listener at `addr` (by address; with port 0 in the
/// file, by its place and ip) and the rest.
fn take_inherited(
    inherited: Vec<Listening>,
    addr: SocketAddr,
    role: Role,
) -> (Vec<std::net::TcpListener>, Vec<Listening>) {
    let (mine, rest): (Vec<_>, Vec<_>) = inherited.into_iter().partition(|l| {
        let same_kind = matches!(
            (l.role, role),
            (Role::Proxy(_), Role::Proxy(_)) | (Role::Admin, Role::Admin)
        );
        same_kind
            && (l.addr == addr || (addr.port() == 0 && l.role == role && l.addr.ip() == addr.ip()))
    });
    let mine = mine.into_iter().map(|l| l.fd.into()).collect();
    (mine, rest)
}

/// Connections queued on a SO_REUSEPORT listener that closes are reset unless
/// `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14+), which moves them to another listener of the
/// group: turned on where ringlb may, said at start where it may not.
pub fn enable_migrate_req() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config(addresses: &[&str]) -> Config {
        let mut text = String::from("[server]\nworkers = 2\n");
        for a in addresses {
            text += &format!("[[listen]]\naddress = \"{a}\"\n");
        }
        text += "[[balancer]]\nname = \"b\"\nmembers = [{ url = \"http://127.0.0.1:9\" }]\n";
        Config::parse(&text).unwrap()
    }

    #[test]
    fn accepted_connections_inherit_tcp_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"G").unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    /// Asserts that `listener` queues a connection for accept only once its first bytes arrived,
    /// and that they are there for the first receive.
    fn assert_defers(listener: &std::net::TcpListener) {
        use std::io::{ErrorKind, Read};
        use std::time::{Duration, Instant};
        listener.set_nonblocking(true).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The handshake is done, but a silent connection is not queued for accept (the kernel
        // hands it over after about a second of silence anyway).
        std::thread::sleep(Duration::from_millis(50));
        let silent = listener.accept().map(|_| ()).unwrap_err();
        assert_eq!(silent.kind(), ErrorKind::WouldBlock, "{silent}");
        client.write_all(b"G").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("not accepted: {e}"),
            }
        };
        accepted.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(accepted.read(&mut byte).unwrap(), 1);
        assert_eq!(&byte, b"G");
    }

    #[test]
    fn a_connection_is_accepted_only_once_its_first_bytes_arrived() {
        assert_defers(&bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap());
    }

    #[test]
    fn a_handed_over_socket_defers_accepts_too() {
        // As a ringlb that did not set the option would hand it over.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let (bound, per_worker) = bind_group(addr, vec![plain], 1).unwrap();
        assert_eq!(bound, addr);
        assert_defers(&per_worker[0][0]);
    }

    #[test]
    fn a_reload_keeps_slots_and_ports_binds_what_is_new_and_closes_what_is_gone() {
        let mut first = config(&["127.0.0.1:0", "127.0.0.2:0"]);
        let (mut l, per_worker) = Listeners::start(&mut first, Vec::new()).unwrap();
        assert_eq!(per_worker.len(), 2);
        assert!(
            per_worker.iter().all(|w| w.len() == 2),
            "one socket per worker and listener"
        );
        let kept = first.listen[1].address;
        // The second kept (now first in the file), the first gone, a new one added.
        let mut next = config(&["127.0.0.2:0", "127.0.0.3:0"]);
        let plan = l.plan(&mut next).unwrap();
        assert_eq!(plan.slots, vec![1, 2]);
        assert_eq!(
            next.listen[0].address, kept,
            "a kept listener keeps its bound port"
        );
        assert_ne!(next.listen[1].address.port(), 0, "a new one is bound");
        let sockets = l.commit(plan, &next);
        assert!(sockets.iter().all(|w| w.len() == 1 && w[0].0 == 2));
        assert!(l.open[0].is_none(), "the removed listener's slot is closed");
        let removed = l.removed();
        assert_eq!(removed.len(), 1);
        assert_eq!(
            (removed[0].0, removed[0].1.address),
            (0, first.listen[0].address)
        );
        // Back again: the same identity, its old slot, a new socket.
        let mut again = config(&["127.0.0.1:0"]);
        let plan = l.plan(&mut again).unwrap();
        assert_eq!(plan.slots, vec![0]);
        assert_eq!(
            l.commit(plan, &again).iter().map(Vec::len).sum::<usize>(),
            2
        );
    }

    #[test]
    fn an_address_that_cannot_be_bound_fails_the_plan_and_changes_nothing() {
        let mut first = config(&["127.0.0.1:0"]);
        let (mut l, _sockets) = Listeners::start(&mut first, Vec::new()).unwrap();
        // Taken by another socket without SO_REUSEPORT.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = other.local_addr().unwrap().to_string();
        let mut next = config(&["127.0.0.1:0", &taken]);
        let e = l.plan(&mut next).err().unwrap();
        assert!(e.contains(&format!("cannot listen on {taken}")), "{e}");
        assert!(l.open[0].is_some());
        // The port a port-0 listener got, written out: it would join that listener's group.
        let bound = first.listen[0].address.to_string();
        let mut next = config(&["127.0.0.1:0", &bound]);
        let e = l.plan(&mut next).err().unwrap();
        assert!(e.contains("another ringlb listener has it"), "{e}");
    }
}
