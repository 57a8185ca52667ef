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
//! listening sockets. Must never: keep those duplicates once the process stops (a socket kept open
//! by nobody accepting would still be given connections by the kernel), or stop the old process
//! before the new one serves.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
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

/// One listening socket of the running process.
pub struct Listening {
    pub role: Role,
    pub worker: usize,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

/// The old side: a thread that answers one `takeover`.
pub struct Handover {
    path: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handover {
    /// Listens on `path` (replacing a stale socket file) for a new process to take `offered`.
    pub fn start(
        path: &Path,
        offered: Vec<Listening>,
        control: std::sync::mpsc::Sender<Control>,
    ) -> std::io::Result<Handover> {
        let _ = std::fs::remove_file(path);
        let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
        listener.bind(&SockAddr::unix(path)?)?;
        listener.listen(4)?;
        let owned = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("ringlb-upgrade".into())
            .spawn(move || serve(listener, offered, &owned, control))?;
        Ok(Handover {
            path: path.to_path_buf(),
            thread: Some(thread),
        })
    }

    /// Ends the thread (closing its duplicates of the listening sockets) and removes the path.
    pub fn stop(mut self) {
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                // Wake its accept with a connection that says "stop".
                if let Ok(s) = connect(&self.path) {
                    let _ = send(&s, b"stop", None);
                }
            }
            let _ = t.join();
        }
    }
}

/// Answers takeovers until one succeeds or `stop` comes.
fn serve(
    listener: Socket,
    offered: Vec<Listening>,
    path: &Path,
    control: std::sync::mpsc::Sender<Control>,
) {
    loop {
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        let _ = conn.set_read_timeout(Some(WAIT));
        match recv(&conn).map(|(m, _)| m) {
            Ok(m) if m == "takeover" => match give(&conn, &offered) {
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
            Ok(m) if m == "stop" => return,
            Ok(m) => tracing::warn!("upgrade socket: unexpected message {m:?}"),
            Err(e) => tracing::warn!("upgrade socket: {e}"),
        }
    }
}

/// Sends every listening socket, then waits for `ready`.
fn give(conn: &Socket, offered: &[Listening]) -> Result<(), String> {
    for l in offered {
        let text = match l.role {
            Role::Proxy(i) => format!("proxy {i} {} {}", l.worker, l.addr),
            Role::Admin => format!("admin - {} {}", l.worker, l.addr),
        };
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
        .map_err(|e| e.to_string())?;
    send(&conn, b"takeover", None).map_err(|e| e.to_string())?;
    let mut taken = Vec::new();
    loop {
        let (text, fd) = recv(&conn).map_err(|e| format!("upgrade: {e}"))?;
        if text == "end" {
            return Ok((conn, taken));
        }
        let fd = fd.ok_or_else(|| format!("upgrade: no socket with {text:?}"))?;
        taken.push(parse(&text, fd)?);
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
    let bad = || format!("upgrade: cannot read {text:?}");
    let mut parts = text.split(' ');
    let (kind, index, worker, addr) = (parts.next(), parts.next(), parts.next(), parts.next());
    let role = match (kind, index) {
        (Some("proxy"), Some(i)) => Role::Proxy(i.parse().map_err(|_| bad())?),
        (Some("admin"), Some("-")) => Role::Admin,
        _ => return Err(bad()),
    };
    Ok(Listening {
        role,
        worker: worker.and_then(|w| w.parse().ok()).ok_or_else(bad)?,
        addr: addr.and_then(|a| a.parse().ok()).ok_or_else(bad)?,
        fd,
    })
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
        let offered = vec![Listening {
            role: Role::Proxy(0),
            worker: 0,
            addr,
            fd: l.try_clone().unwrap().into(),
        }];
        let (tx, rx) = std::sync::mpsc::channel();
        let h = Handover::start(&path, offered, tx).unwrap();
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
    fn a_stopped_giver_releases_the_path_and_a_bad_description_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringlb-handover2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("up.sock");
        let (tx, _rx) = std::sync::mpsc::channel();
        Handover::start(&path, Vec::new(), tx).unwrap().stop();
        assert!(take(&path).is_err());
        let fd: OwnedFd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into();
        assert!(parse("proxy x 0 127.0.0.1:1", fd).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
