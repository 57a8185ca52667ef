//! `ringlb-load relay`: the benchmark's "floor", the least work any proxy can do per request. Each
//! client connection gets one keep-alive connection of its own to a member (round robin over its
//! `--route`'s members, chosen once, when the client connects), and two pumps move the bytes: one receive and
//! one send per message in each direction, into and out of one buffer, with no parsing at all
//! (with one request in flight per connection, a message is whatever one receive returns). What a
//! proxy costs above it is its own work; what the floor costs is the kernel's TCP work on this
//! machine. It must never be mistaken for a proxy: no HTTP, no balancing per request, no
//! failover, no limits; a member that cannot be reached closes the client connection.

use std::net::SocketAddr;

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::cli::RelayArgs;

/// One listener and the members its connections are paired with.
struct Route {
    listen: SocketAddr,
    members: Vec<SocketAddr>,
}

/// `PORT=ADDR,ADDR…` (members on 127.0.0.1 may be written as bare ports).
fn route(spec: &str) -> anyhow::Result<Route> {
    let bad = || anyhow::anyhow!("bad --route \"{spec}\" (write it like 18005=19101,19102)");
    let (port, members) = spec.split_once('=').ok_or_else(bad)?;
    let addr = |s: &str| -> anyhow::Result<SocketAddr> {
        let s = s.trim();
        match s.parse::<u16>() {
            Ok(p) => Ok(SocketAddr::from(([127, 0, 0, 1], p))),
            Err(_) => s.parse().map_err(|_| bad()),
        }
    };
    let members = members
        .split(',')
        .map(addr)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Route {
        listen: addr(port)?,
        members,
    })
}

pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    let routes = args
        .routes
        .iter()
        .map(|s| route(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(c) = args.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for r in &routes {
            let l = TcpListener::bind(r.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", r.listen))?;
            listeners.push(l);
        }
        eprintln!("relay listening ({} routes)", routes.len());
        let loops = listeners
            .into_iter()
            .zip(routes)
            .map(|(l, r)| accept_loop(l, r.members));
        futures_util::future::join_all(loops).await;
        Ok(())
    })
}

async fn accept_loop(l: TcpListener, members: Vec<SocketAddr>) {
    let mut next = 0;
    loop {
        let Ok((client, _)) = l.accept().await else {
            // Out of descriptors, say: wait rather than spin (the floor's CPU is the measure).
            compio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let member = members[next % members.len()];
        next += 1;
        compio::runtime::spawn(pair(client, member)).detach();
    }
}

/// Connects the client to its member and pumps both ways until either side closes.
async fn pair(client: TcpStream, member: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(member).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let up = compio::runtime::spawn(pump(client.clone(), upstream.clone()));
    pump(upstream, client).await;
    let _ = up.await;
}

/// Receives from `from` and sends what came to `to`, until `from` ends or either fails; then
/// ends `to`'s sending side so the other pump stops too.
async fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let BufResult(r, b) = from.read(buf).await;
        buf = b;
        if !matches!(r, Ok(n) if n > 0) {
            break;
        }
        let BufResult(r, b) = to.write_all(buf).await;
        buf = b;
        if r.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_ports_and_addresses() {
        let r = route("18005=19101, 127.0.0.2:80").unwrap();
        assert_eq!(r.listen, "127.0.0.1:18005".parse().unwrap());
        assert_eq!(
            r.members,
            vec![
                "127.0.0.1:19101".parse().unwrap(),
                "127.0.0.2:80".parse().unwrap()
            ]
        );
        assert!(route("18005").is_err());
        assert!(route("18005=").is_err());
        assert!(route("x=1").is_err());
    }
}
