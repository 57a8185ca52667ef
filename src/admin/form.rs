//! `POST /status`: the status page's per-member form (the balancer-manager's "Edit" of Apache),
//! as `application/x-www-form-urlencoded` fields `csrf`, `balancer`, `member` (the index),
//! `address` (its `host:port`, so that a page from before a reload that moved members changes
//! nothing rather than another member), `status`, `weight`. A change has the same effect as the member API's; the answer is a 303 back to the
//! page.
//!
//! Must never: change anything without this process's form token (`csrf`), or record a value the
//! member already has as an administrator's override.

use super::{api, csrf, Reply};
use crate::board::Board;
use crate::reload::ControlSender;

#[derive(Default)]
struct Fields {
    csrf: String,
    balancer: String,
    member: String,
    address: String,
    status: String,
    weight: String,
}

fn fields(body: &[u8]) -> Fields {
    let mut f = Fields::default();
    for (k, v) in form_urlencoded::parse(body) {
        let slot = match &*k {
            "csrf" => &mut f.csrf,
            "balancer" => &mut f.balancer,
            "member" => &mut f.member,
            "address" => &mut f.address,
            "status" => &mut f.status,
            "weight" => &mut f.weight,
            _ => continue,
        };
        *slot = v.into_owned();
    }
    f
}

fn text(status: u16, message: String) -> Reply {
    Reply::new(status, "text/plain; charset=utf-8", message + "\n")
}

/// Applies one member's form (off the worker: it waits for the board, `super::off_worker`).
pub(super) fn change(board: &Board, control: Option<&ControlSender>, body: &[u8]) -> Reply {
    let f = fields(body);
    if !csrf::valid(&f.csrf) {
        return text(
            403,
            "this form is stale or was not sent by this status page: reload the page".into(),
        );
    }
    let weight = match f.weight.trim() {
        "" => None,
        w => match w.parse::<u32>() {
            Ok(w) => Some(w),
            Err(_) => return text(400, format!("weight \"{w}\" is not a number")),
        },
    };
    let mut guard = board.lock();
    let config = guard.generation.config.clone();
    let Some((b, m)) = api::find(&config, &f.balancer, &f.member) else {
        return text(404, "no such balancer or member".into());
    };
    if config.balancers[b].members[m].host_port != f.address {
        return text(
            409,
            "the configuration changed since this page was loaded: reload the page".into(),
        );
    }
    let now = guard.admin_of(b, m);
    let status = Some(f.status.trim()).filter(|s| !s.is_empty() && *s != now.status.name());
    let weight = weight.filter(|&w| w != now.weight);
    if status.is_some() || weight.is_some() {
        if let Err(e) = api::apply(&config, &mut guard, b, m, status, weight) {
            return text(400, e);
        }
        drop(guard);
        super::members_changed(board, control, &config);
    }
    let mut r = Reply::new(303, "text/plain", "changed: back to /status\n".into());
    r.extra = "Location: /status\r\n".into();
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_fields_a_browser_sends() {
        let f = super::fields(
            b"csrf=ab12&balancer=my+app&member=1&address=h%3A1&status=draining&weight=&x=y",
        );
        assert_eq!(
            (&*f.csrf, &*f.balancer, &*f.member, &*f.address),
            ("ab12", "my app", "1", "h:1")
        );
        assert_eq!((&*f.status, &*f.weight), ("draining", ""));
        let f = super::fields(b"balancer=a%26b&member=127.0.0.1%3A9001");
        assert_eq!((&*f.balancer, &*f.member), ("a&b", "127.0.0.1:9001"));
    }
}
