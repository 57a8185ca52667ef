//! Binary upgrade without a refused connection: the running process hands its listening sockets
//! to a new one (`ringlb run --upgrade`) over a unix socket (`[server] upgrade_socket`), as
//! HAProxy, sozu and pingora do. Both processes then hold the same sockets, so nothing queued on
//! them is lost; the old one stops accepting once the new one says it is ready, and finishes its
//! requests in flight within `shutdown_grace`.
//!
//! The exchange, one SOCK_SEQPACKET message each (boundaries kept, so each descriptor arrives with
//! its own description): the new process sends `takeover`; the old one sends one message per
//! listening socket (`proxy <index> <worker> <address>` or `admin - <worker> <address>`, the socket
//! as SCM_RIGHTS) and `end`; the new one starts serving on them and sends `ready`; the old one
//! removes the unix socket's path, answers `bye` and stops (`Control::Upgraded`); the new one then
//! binds the path for the next upgrade.
//!
//! Owns: both sides of the exchange and the old side's thread, which holds duplicates of the
//! listening sockets (the list `listeners` keeps, renewed by each reload before it is published).
//! Must never: keep those duplicates once the process stops or once a reload removed their
//! listener (a socket kept open by nobody accepting would still be given connections by the
//! kernel), hold the list while it talks to a new process, or stop the old process before the new
//! one serves.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::reload::Control;
use crate::worker::Role;

/// How long each side waits for the other's next message.
const WAIT: Duration = Duration::from_secs(30);

/// The sockets a new process would take: renewed by every reload that changes the listeners,
/// read by the handover thread when a new process asks.
#[allow(clippy::disallowed_types)]
pub type Offered = std::sync::Arc<std::sync::Mutex<Vec<Listening>>>;

/// The sockets offered to a new process.
#[allow(clippy::disallowed_types)]
pub fn offer(sockets: Vec<Listening>) -> Offered {
    std::sync::Arc::new(std::sync::Mutex::new(sockets))
}

/// Locks `offered` (taken at a reload and by a takeover, never on the request path).
#[allow(clippy::disallowed_types)]
pub fn lock(offered: &Offered) -> std::sync::MutexGuard<'_, Vec<Listening>> {
    offered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One listening socket of the running process.
pub struct Listening {
    pub role: Role,
    pub worker: usize,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

/// The old side: a thread that answers one `takeover`.
pub struct Handover {
    listener: std::sync::Arc<Socket>,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handover {
    /// Listens on `path` (replacing a stale socket file) for a new process to take `offered`.
    pub fn start(
        path: &Path,
        offered: Offered,
        control: std::sync::mpsc::Sender<Control>,
    ) -> std::io::Result<Handover> {
        clear_stale(path)?;
        let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
        listener.bind(&SockAddr::unix(path)?)?;
        // Only this user may take the sockets (checked again per connection: `same_user`).
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.listen(4)?;
        let listener = std::sync::Arc::new(listener);
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, stop, owned) = (listener.clone(), stopping.clone(), path.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("ringlb-upgrade".into())
            .spawn(move || serve(&l, &offered, &owned, control, &stop))?;
        Ok(Handover {
            listener,
            stopping,
            thread: Some(thread),
        })
    }

    /// Ends the thread (closing its duplicates of the listening sockets). The path is left to
    /// whoever binds it next.
    pub fn stop(mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        // Wakes a blocked accept (it fails), without connecting through the path, where a
        // successor may already listen.
        let _ = self.listener.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes a stale socket file at `path`; refuses when a ringlb still listens there, or when the
/// path is something else than a socket (a typo must not delete a file).
fn clear_stale(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::other(
            "the path exists and is not a socket; remove it or choose another upgrade_socket",
        ));
    }
    if connect(path).is_ok() {
        return Err(std::io::Error::other(
            "another ringlb listens there (start this one with --upgrade to take over from it)",
        ));
    }
    std::fs::remove_file(path)
}

/// Whether the peer runs as the user that owns the socket file (this process's user).
fn same_user(conn: &Socket, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(owner) = std::fs::metadata(path).map(|m| m.uid()) else {
        return false;
    };
    rustix::net::sockopt::socket_peercred(conn).is_ok_and(|c| c.uid.as_raw() == owner)
}

/// Answers takeovers until one succeeds or `stop` comes.
fn serve(
    listener: &Socket,
    offered: &Offered,
    path: &Path,
    control: std::sync::mpsc::Sender<Control>,
    stopping: &std::sync::atomic::AtomicBool,
) {
    loop {
        let accepted = listener.accept();
        if stopping.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let conn = match accepted {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::warn!("upgrade socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if !same_user(&conn, path) {
            tracing::warn!("upgrade socket: a process of another user connected; refused");
            continue;
        }
        let _ = conn.set_read_timeout(Some(WAIT));
        let _ = conn.set_write_timeout(Some(WAIT));
        match recv(&conn).map(|(m, _)| m) {
            Ok(m) if m == "takeover" => match give(&conn, &copies(offered)) {
                Ok(()) => {
                    // The new process serves: the path is its now; this one stops.
                    let _ = std::fs::remove_file(path);
                    let _ = send(&conn, b"bye", None);
                    tracing::info!(
                        "upgrade: a new process took the listening sockets; stopping this one"
                    );
                    let _ = control.send(Control::Upgraded);
                    return;
                }
                Err(e) => tracing::warn!("upgrade abandoned, this process keeps serving: {e}"),
            },
            Ok(m) => tracing::warn!("upgrade socket: unexpected message {m:?}"),
            Err(e) => tracing::warn!("upgrade socket: {e}"),
        }
    }
}

/// Duplicates of the sockets offered now: a reload does not wait for a takeover's exchange.
fn copies(offered: &Offered) -> Vec<Listening> {
    let list = lock(offered);
    let copy = |l: &Listening| -> Option<Listening> {
        let fd = l.fd.try_clone().ok()?;
        Some(Listening { fd, ..*l })
    };
    list.iter().filter_map(copy).collect()
}

/// Sends every listening socket, then waits for `ready`.
fn give(conn: &Socket, offered: &[Listening]) -> Result<(), String> {
    for l in offered {
        let text = describe(l.role, l.worker, l.addr);
        send(conn, text.as_bytes(), Some(&l.fd)).map_err(|e| e.to_string())?;
    }
    send(conn, b"end", None).map_err(|e| e.to_string())?;
    match recv(conn) {
        Ok((m, _)) if m == "ready" => Ok(()),
        Ok((m, _)) => Err(format!("the new process said {m:?}")),
        Err(e) => Err(format!("the new process did not get ready: {e}")),
    }
}

/// The new side: takes the running process's listening sockets. Returns them with the connection
/// to answer on (`ready`).
pub fn take(path: &Path) -> Result<(Socket, Vec<Listening>), String> {
    let conn = connect(path).map_err(|e| {
        format!(
            "cannot reach the running ringlb at {}: {e} (is it running with this upgrade_socket?)",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(WAIT))
        .and_then(|()| conn.set_write_timeout(Some(WAIT)))
        .map_err(|e| e.to_string())?;
    send(&conn, b"takeover", None).map_err(|e| e.to_string())?;
    let mut taken = Vec::new();
    loop {
        let (text, fd) = recv(&conn).map_err(|e| format!("upgrade: {e}"))?;
        if text == "end" {
            return Ok((conn, taken));
        }
        let fd = fd.ok_or_else(|| format!("upgrade: no socket with {text:?}"))?;
        let l = parse(&text, fd)?;
        // What came must be a listening TCP socket at the address it was described with.
        let sock = Socket::from(l.fd.try_clone().map_err(|e| e.to_string())?);
        let addr = sock.local_addr().ok().and_then(|a| a.as_socket());
        if !sock.is_listener().unwrap_or(false) || addr != Some(l.addr) {
            return Err(format!("upgrade: {text:?} is not that listening socket"));
        }
        taken.push(l);
    }
}

/// Tells the old process that this one serves, and waits until it let go of the path.
pub fn ready(conn: &Socket) -> Result<(), String> {
    send(conn, b"ready", None).map_err(|e| e.to_string())?;
    match recv(conn) {
        Ok((m, _)) if m == "bye" => Ok(()),
        Ok((m, _)) => Err(format!("the old process said {m:?}")),
        Err(e) => Err(format!("no answer from the old process: {e}")),
    }
}

fn parse(text: &str, fd: OwnedFd) -> Result<Listening, String> {
    let (role, worker, addr) = read_description(text)?;
    Ok(Listening {
        role,
        worker,
        addr,
        fd,
    })
}

/// How a listening socket is described to the new process: `proxy <index> <worker> <address>`
/// or `admin - <worker> <address>`.
pub fn describe(role: Role, worker: usize, addr: SocketAddr) -> String {
    match role {
        Role::Proxy(i) => format!("proxy {i} {worker} {addr}"),
        Role::Admin => format!("admin - {worker} {addr}"),
    }
}

/// Reads what `describe` wrote; anything else (another field count, a number or address that does
/// not parse) is an error naming the text.
pub fn read_description(text: &str) -> Result<(Role, usize, SocketAddr), String> {
    let bad = || format!("upgrade: cannot read {text:?}");
    let parts: Vec<&str> = text.split(' ').collect();
    let [kind, index, worker, addr] = parts[..] else {
        return Err(bad());
    };
    let role = match (kind, index) {
        ("proxy", i) => Role::Proxy(i.parse().map_err(|_| bad())?),
        ("admin", "-") => Role::Admin,
        _ => return Err(bad()),
    };
    let worker = worker.parse().map_err(|_| bad())?;
    let addr = addr.parse().map_err(|_| bad())?;
    Ok((role, worker, addr))
}

fn connect(path: &Path) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    s.connect(&SockAddr::unix(path)?)?;
    Ok(s)
}

fn send(conn: &Socket, text: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = fd.map(|f| [f.as_fd()]);
    if let Some(fds) = &fds {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    rustix::net::sendmsg(
        conn,
        &[IoSlice::new(text)],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

fn recv(conn: &Socket) -> std::io::Result<(String, Option<OwnedFd>)> {
    let mut buf = [0u8; 512];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the other process closed the upgrade socket",
        ));
    }
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
                fd.get_or_insert(f);
            }
        }
    }
    Ok((String::from_utf8_lossy(&buf[..msg.bytes]).into_owned(), fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_cross_to_the_taker_and_the_giver_stops_after_ready() {
        let dir = std::env::temp_dir().join(format!("ringlb-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let offered = offer(vec![Listening {
            role: Role::Proxy(0),
            worker: 0,
            addr,
            fd: l.try_clone().unwrap().into(),
        }]);
        let (tx, rx) = std::sync::mpsc::channel();
        let h = Handover::start(&path, offered, tx).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only this user may connect");
        let (conn, taken) = take(&path).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            (taken[0].role, taken[0].worker, taken[0].addr),
            (Role::Proxy(0), 0, addr)
        );
        // The same socket: a connection the old listener queued is accepted by the new one.
        drop(l);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let mine = std::net::TcpListener::from(taken.into_iter().next().unwrap().fd);
        let (accepted, _) = mine.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
        ready(&conn).unwrap();
        assert!(matches!(rx.recv_timeout(WAIT), Ok(Control::Upgraded)));
        assert!(!path.exists(), "the old process let go of the path");
        h.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopped_giver_answers_no_more_and_a_bad_description_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringlb-handover2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let (tx, _rx) = std::sync::mpsc::channel();
        let h = Handover::start(&path, Offered::default(), tx.clone()).unwrap();
        // A second giver on the same path is refused while the first listens.
        assert!(Handover::start(&path, Offered::default(), tx.clone()).is_err());
        h.stop();
        assert!(take(&path).is_err());
        // A stale socket file is replaced; anything else at the path is left alone.
        Handover::start(&path, Offered::default(), tx.clone())
            .unwrap()
            .stop();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not a socket").unwrap();
        assert!(Handover::start(&path, Offered::default(), tx).is_err());
        assert!(path.exists());
        let fd: OwnedFd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into();
        assert!(parse("proxy x 0 127.0.0.1:1", fd).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descriptions_read_back_as_written_and_nothing_else_is_read() {
        // Property: for generated roles, workers and addresses (v4 and v6), reading what was
        // written gives the same; the text with a field dropped, added or changed is refused.
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        for _ in 0..2000 {
            let role = match next() % 3 {
                0 => Role::Admin,
                _ => Role::Proxy((next() % 1000) as usize),
            };
            let worker = (next() % 512) as usize;
            let port = (next() % 65536) as u16;
            let addr: SocketAddr = if next() % 2 == 0 {
                (std::net::Ipv4Addr::from(next() as u32), port).into()
            } else {
                (
                    std::net::Ipv6Addr::from(u128::from(next()) << 64 | u128::from(next())),
                    port,
                )
                    .into()
            };
            let text = describe(role, worker, addr);
            assert_eq!(read_description(&text), Ok((role, worker, addr)), "{text}");
            let fields: Vec<&str> = text.split(' ').collect();
            assert!(read_description(&fields[..3].join(" ")).is_err());
            assert!(read_description(&format!("{text} 1")).is_err());
            assert!(read_description(&format!("{text}x")).is_err());
            assert!(read_description(&text.replacen(' ', "  ", 1)).is_err());
        }
        assert!(read_description("admin 0 0 127.0.0.1:1").is_err());
        assert!(read_description("").is_err());
    }
}
