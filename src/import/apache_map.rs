//! What an Apache httpd configuration means for ringlb: `Listen` and `<VirtualHost>` (ports,
//! `ServerName`/`ServerAlias`, `SSLEngine` and its certificate, an https redirect), `<Proxy
//! balancer://…>` with `BalancerMember` and `ProxySet`, `ProxyPass` (to a balancer or to one
//! URL; inside `<Location>` too) with `ProxyPassReverse`, `ProxyPassReverseCookiePath`,
//! `ProxyPreserveHost`, `ProxyTimeout`, and the `balancer-manager` / `server-status` handlers.
//! The result is a model (`Import`) that `toml_out` writes.
//!
//! Owns: the translation of each directive and parameter. Must never: drop a directive without a
//! note saying where it was and why (not needed, not supported, or translated differently).
//! `<IfModule>`, `<IfDefine>` and `<IfVersion>` are read as if their condition held (said once).

use super::apache_conf::Directive;
use super::params::{self, seconds, Param};

/// A note for the operator: where, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub at: String,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Listener {
    pub address: String,
    /// Certificate and key files (TLS listener), one pair per TLS virtual host on the port.
    pub certs: Vec<(String, String)>,
    pub redirect_https: bool,
    pub from: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Balancer {
    pub name: String,
    /// Keys of `[[balancer]]` as TOML (`key = value`), in the order they were found.
    pub keys: Vec<(String, String)>,
    pub members: Vec<Member>,
    pub from: Vec<String>,
    /// A member was `ws://`/`wss://` (mod_proxy_wstunnel): its routes tunnel WebSockets.
    pub websocket: bool,
}

#[derive(Debug, Default)]
pub struct Member {
    pub url: String,
    pub keys: Vec<(String, String)>,
    pub from: String,
}

#[derive(Debug, Default, Clone)]
pub struct Route {
    pub host: Option<String>,
    pub path: String,
    pub balancer: String,
    /// `ProxyPass /path !`: `exclude = true`, no balancer.
    pub exclude: bool,
    /// From the main server (outside any `<VirtualHost>`).
    pub main_server: bool,
    /// `ProxyPassReverseCookieDomain from to` pairs (routes with `reverse` only).
    pub cookie_domains: Vec<(String, String)>,
    pub member_path: Option<String>,
    pub preserve_host: bool,
    pub reverse: bool,
    /// `upgrade=websocket` on the `ProxyPass`, or a `ws://`/`wss://` target or member
    /// (mod_proxy_wstunnel): the protocols the route tunnels (`"any"` for Apache's `ANY` or `*`).
    pub upgrade: Vec<String>,
    pub from: String,
}

/// The translation.
#[derive(Debug, Default)]
pub struct Import {
    pub listeners: Vec<Listener>,
    pub balancers: Vec<Balancer>,
    pub routes: Vec<Route>,
    /// Where a `balancer-manager` or `server-status` handler was: ringlb's admin listener.
    pub admin: Vec<String>,
    pub response_timeout: Option<String>,
    pub notes: Vec<Note>,
    /// Every `Listen` (port or address, where): one no proxying host uses is noted.
    pub listens: Vec<(String, String)>,
}

/// Directives with nothing to carry over (files, logs, modules, MPM and server identity).
const NOT_NEEDED: &[&str] = &[
    "ServerRoot",
    "ServerAdmin",
    "DocumentRoot",
    "ErrorLog",
    "CustomLog",
    "LogLevel",
    "LogFormat",
    "LoadModule",
    "Mutex",
    "PidFile",
    "User",
    "Group",
    "HostnameLookups",
    "AccessFileName",
    "DefaultRuntimeDir",
    "ServerTokens",
    "ServerSignature",
    "TraceEnable",
    "KeepAlive",
    "MaxKeepAliveRequests",
    "StartServers",
    "MinSpareThreads",
    "MaxSpareThreads",
    "ThreadLimit",
    "ThreadsPerChild",
    "MaxRequestWorkers",
    "MaxConnectionsPerChild",
    "MinSpareServers",
    "MaxSpareServers",
    "AddDefaultCharset",
    "DirectoryIndex",
    "TypesConfig",
    "AddType",
    "AddOutputFilter",
    "AddLanguage",
    "AddCharset",
    "AddHandler",
    "AddIcon",
    "AddIconByType",
    "AddIconByEncoding",
    "AddAlt",
    "AddAltByEncoding",
    "AddAltByType",
    "DefaultIcon",
    "ReadmeName",
    "HeaderName",
    "IndexIgnore",
    "IndexOptions",
    "LanguagePriority",
    "ForceLanguagePriority",
    "MIMEMagicFile",
    "SetEnvIf",
    "BrowserMatch",
    "Options",
    "AllowOverride",
    "Define",
    "ServerName",
    "ServerAlias",
    "SSLEngine",
    "SSLCertificateFile",
    "SSLCertificateKeyFile",
    "SSLRandomSeed",
    "SSLSessionCache",
    "SSLSessionCacheTimeout",
    "SSLPassPhraseDialog",
    "SSLCipherSuite",
    "SSLHonorCipherOrder",
    "SSLCompression",
    "SSLSessionTickets",
    "SSLStaplingCache",
    "SSLUseStapling",
    "SSLOptions",
    "ProxyRequests",
    "ProxyVia",
    "ProxyPreserveHost",
    "ProxyTimeout",
    "ProxyPass",
    "ProxyPassReverse",
    "BalancerMember",
    "ProxySet",
    "ProxyPassReverseCookiePath",
    "SetHandler",
    "Listen",
    "UseCanonicalName",
    "RewriteEngine",
];

/// Translates `tree`.
pub fn translate(tree: &[Directive]) -> Import {
    let mut m = Import::default();
    let mut t = Translator {
        out: &mut m,
        conditions_noted: false,
        timeout: None,
        proxying_vhosts: count_proxying(tree),
    };
    // Apache merges the main server's settings into every vhost, wherever they are written.
    let preserve = |d: &Directive| {
        d.is("ProxyPreserveHost") && d.args.first().is_some_and(|a| a.eq_ignore_ascii_case("on"))
    };
    let mut global = Vhost {
        preserve_host: tree.iter().any(preserve),
        global: true,
        ..Vhost::default()
    };
    t.walk(tree, &mut global);
    t.finish_vhost(&global, None);
    websocket_balancer_routes(t.out);
    inherit_main_server_routes(&mut t.out.routes);
    if t.out.response_timeout.is_none() {
        t.out.response_timeout = t.timeout.take();
    }
    t.note_unused_listens();
    m
}

/// Routes to a balancer with a `ws://`/`wss://` member tunnel WebSockets (mod_proxy_wstunnel),
/// wherever in the files the balancer was defined.
fn websocket_balancer_routes(out: &mut Import) {
    for r in out.routes.iter_mut().filter(|r| r.upgrade.is_empty()) {
        if out
            .balancers
            .iter()
            .any(|b| b.name == r.balancer && b.websocket)
        {
            r.upgrade.push("websocket".into());
        }
    }
}

/// Apache puts the main server's `ProxyPass` lines first in every virtual host
/// (`ProxyPassInherit On`, the default). ringlb tries a host's routes before any-host ones, so a
/// main-server route (an exclusion above all) is given to every host that has routes of its own,
/// unless that host has a route with the same path.
fn inherit_main_server_routes(routes: &mut Vec<Route>) {
    let mut hosts: Vec<String> = routes.iter().filter_map(|r| r.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    let mut copies = Vec::new();
    for r in routes.iter().filter(|r| r.main_server && r.host.is_none()) {
        for h in &hosts {
            let own = routes
                .iter()
                .any(|o| o.host.as_deref() == Some(h.as_str()) && o.path == r.path);
            if !own {
                copies.push(Route {
                    host: Some(h.clone()),
                    ..r.clone()
                });
            }
        }
    }
    routes.extend(copies);
}

/// What a virtual host (or the main server) says.
#[derive(Debug, Default, Clone)]
struct Vhost {
    names: Vec<String>,
    ports: Vec<String>,
    tls: bool,
    /// Where `SSLEngine on` was written.
    tls_at: String,
    cert: Option<String>,
    key: Option<String>,
    redirect_https: bool,
    preserve_host: bool,
    /// (public path, target, params, the directive)
    passes: Vec<(String, String, Vec<String>, Directive)>,
    reverses: Vec<(String, String, String)>,
    cookie_paths: Vec<(String, String, String)>,
    /// `ProxyPassReverseCookieDomain` (from, to, where).
    cookie_domains: Vec<(String, String, String)>,
    /// `DocumentRoot`: where an `ErrorDocument` path is a file.
    document_root: Option<String>,
    /// `ErrorDocument 502|503|504 /path` (status, path, the directive).
    error_docs: Vec<(String, String, Directive)>,
    /// The main server (not a `<VirtualHost>`): its `ServerName` does not limit its routes.
    global: bool,
}

struct Translator<'a> {
    out: &'a mut Import,
    /// Virtual hosts with a `ProxyPass` (`count_proxying`).
    proxying_vhosts: usize,
    conditions_noted: bool,
    /// `Timeout`: the default of `ProxyTimeout`.
    timeout: Option<String>,
}

impl Translator<'_> {
    fn note(&mut self, d: &Directive, text: impl Into<String>) {
        self.out.notes.push(Note {
            at: d.at(),
            text: text.into(),
        });
    }

    fn walk(&mut self, list: &[Directive], v: &mut Vhost) {
        for d in list {
            self.directive(d, v);
        }
    }

    fn directive(&mut self, d: &Directive, v: &mut Vhost) {
        let arg = |i: usize| d.args.get(i).map_or("", String::as_str);
        let on = |i: usize| arg(i).eq_ignore_ascii_case("on");
        let name = d.name.to_ascii_lowercase();
        match name.as_str() {
            "ifmodule" | "ifdefine" | "ifversion" => {
                if !self.conditions_noted {
                    self.conditions_noted = true;
                    self.note(d, "<IfModule>/<IfDefine>/<IfVersion> are read as if their condition held");
                }
                if let Some(kids) = &d.children {
                    self.walk(kids, v);
                }
            }
            "virtualhost" => {
                let mut inner = Vhost {
                    preserve_host: v.preserve_host,
                    document_root: v.document_root.clone(),
                    error_docs: v.error_docs.clone(),
                    cookie_domains: v.cookie_domains.clone(),
                    ports: d.args.iter().map(|a| port_of(a)).collect(),
                    ..Vhost::default()
                };
                self.walk(d.children.as_deref().unwrap_or(&[]), &mut inner);
                self.finish_vhost(&inner, Some(d));
            }
            "proxy" => self.proxy_section(d),
            "location" | "locationmatch" => self.location(d, v),
            "listen" => {
                let port = port_of(arg(0));
                if !v.ports.contains(&port) {
                    v.ports.push(port.clone());
                }
                self.out.listens.push((port, d.at()));
            }
            "servername" if !v.global => v.names.insert(0, host_name(arg(0))),
            "serveralias" => {
                for a in &d.args {
                    if a.contains(['*', '?']) {
                        let text = format!("ServerAlias {a}: wildcard names are not supported (a route matches one host exactly): not translated");
                        self.note(d, text);
                    } else {
                        v.names.push(host_name(a));
                    }
                }
            }
            "sslengine" => {
                v.tls = on(0);
                v.tls_at = d.at();
            }
            "sslcertificatefile" => v.cert = Some(arg(0).to_string()),
            "sslcertificatekeyfile" => v.key = Some(arg(0).to_string()),
            "sslcertificatechainfile" => self.note(
                d,
                "SSLCertificateChainFile: ringlb reads the chain from the certificate file; append this file to it",
            ),
            "proxypreservehost" => v.preserve_host = on(0),
            "documentroot" => v.document_root = Some(arg(0).trim_end_matches('/').to_string()),
            "errordocument" => match arg(0) {
                "502" | "503" | "504" if arg(1).starts_with('/') => {
                    v.error_docs.retain(|(status, ..)| status != arg(0));
                    v.error_docs.push((arg(0).into(), arg(1).into(), d.clone()));
                }
                "502" | "503" | "504" => self.note(d, format!("ErrorDocument {} {}: only a local page (a path under DocumentRoot) is translated: not translated", arg(0), arg(1))),
                _ => self.note(d, format!("ErrorDocument {}: ringlb has pages for the 502, 503 and 504 it answers itself: not translated", arg(0))),
            },
            "proxyerroroverride" if on(0) => self.note(d, "ProxyErrorOverride On: not translated: a member's own error responses are relayed as they are (ringlb's pages are for the errors it answers itself)"),
            "proxyerroroverride" => {}
            "proxytimeout" | "timeout" => match seconds(arg(0)) {
                Some(t) if d.is("Timeout") => self.timeout = Some(t),
                Some(t) => {
                    if self.out.response_timeout.as_ref().is_some_and(|was| *was != t) {
                        self.note(d, format!("ProxyTimeout {}: ringlb has one response_timeout per balancer; this value is used for all of them", arg(0)));
                    }
                    self.out.response_timeout = Some(t);
                }
                None => self.note(d, format!("{} {}: not a duration: not translated", d.name, arg(0))),
            },
            "require" | "order" | "allow" | "deny" | "satisfy" => self.note(
                d,
                format!("{}: access control is not translated (ringlb has no per-path access rules: restrict with a firewall, or use the admin listener and its token)", d.name),
            ),
            "proxypass" => match d.args.len() {
                0 | 1 => self.note(d, "ProxyPass outside <Location> needs a path and a URL: skipped"),
                _ => v.passes.push((arg(0).into(), arg(1).into(), d.args[2..].to_vec(), d.clone())),
            },
            "proxypassreverse" if d.args.len() >= 2 => {
                v.reverses.push((arg(0).into(), arg(1).into(), d.at()))
            }
            "proxypassreversecookiepath" if d.args.len() >= 2 => {
                v.cookie_paths.push((arg(0).into(), arg(1).into(), d.at()))
            }
            "proxypassreversecookiedomain" if d.args.len() >= 2 => {
                v.cookie_domains.push((arg(0).into(), arg(1).into(), d.at()))
            }
            "proxypassreverse" | "proxypassreversecookiepath" | "proxypassreversecookiedomain" => {
                self.note(d, format!("{} needs a path and a URL here: skipped", d.name))
            }
            "balancermember" => match d.args.first() {
                Some(b) if b.starts_with("balancer://") && d.args.len() < 2 => {
                    self.note(d, "BalancerMember names a balancer but no member URL: skipped")
                }
                Some(b) if b.starts_with("balancer://") => {
                    let name = balancer_name(b);
                    self.member(&name, &d.args[1..], d);
                }
                _ => self.note(d, "BalancerMember outside <Proxy balancer://…> without a balancer: skipped"),
            },
            "proxyset" => match d.args.first() {
                Some(b) if b.starts_with("balancer://") => {
                    let name = balancer_name(b);
                    self.balancer_params(&name, &d.args[1..], d);
                }
                _ => self.note(d, "ProxySet outside <Proxy balancer://…>: skipped"),
            },
            "rewriterule" if rewrites_to_https(&d.args) => {
                v.redirect_https = true;
                let text = "RewriteRule to https for every path: translated as redirect_https on this host's listener (RewriteCond lines are not)";
                self.note(d, text);
            }
            "redirect" | "redirectpermanent" if redirects_to_https(&d.args) => v.redirect_https = true,
            "proxypassmatch" | "rewriterule" | "rewritecond"
            | "redirect" | "redirectmatch" | "header" | "requestheader"
            | "alias" | "secruleengine" => {
                self.note(d, format!("{}: not translated (not supported by ringlb)", d.name))
            }
            _ if d.children.is_some() => {
                self.note(d, format!("<{} {}> and what it holds: not translated", d.name, d.args.join(" ")))
            }
            _ if NOT_NEEDED.iter().any(|n| d.is(n)) => {}
            _ => self.note(d, format!("{}: not translated", d.name)),
        }
    }

    /// `<Location /path>`: a `ProxyPass URL` inside maps that path; the balancer-manager and
    /// server-status handlers become the admin listener.
    fn location(&mut self, d: &Directive, v: &mut Vhost) {
        let path = d.args.first().cloned().unwrap_or_default();
        for k in d.children.as_deref().unwrap_or(&[]) {
            let handler = k.args.first().map(|a| a.to_ascii_lowercase());
            match handler.as_deref() {
                Some("balancer-manager" | "server-status") if k.is("SetHandler") => {
                    self.out.admin.push(k.at());
                }
                _ if d.is("LocationMatch") => self.note(
                    k,
                    format!(
                        "{} inside <LocationMatch> (a regular expression): not translated",
                        k.name
                    ),
                ),
                _ if k.is("ProxyPass") && !k.args.is_empty() => v.passes.push((
                    path.clone(),
                    k.args[0].clone(),
                    k.args[1..].to_vec(),
                    k.clone(),
                )),
                _ if k.is("ProxyPass") => self.note(
                    k,
                    format!("ProxyPass in <Location {path}> without a URL: not translated"),
                ),
                _ if k.is("ProxyPassReverse") && k.args.len() == 1 => {
                    v.reverses.push((path.clone(), k.args[0].clone(), k.at()))
                }
                _ if d.is("Location") => self.directive(k, v),
                _ => self.note(
                    k,
                    format!("{} inside <LocationMatch>: not translated", k.name),
                ),
            }
        }
    }

    fn proxy_section(&mut self, d: &Directive) {
        let target = d.args.first().map_or("", String::as_str);
        if !target.starts_with("balancer://") {
            return self.note(
                d,
                format!("<Proxy {target}>: only balancer sections are translated"),
            );
        }
        let name = balancer_name(target);
        self.balancer(&name, d);
        for k in d.children.as_deref().unwrap_or(&[]) {
            if k.is("BalancerMember") {
                // The balancer's URL may come first here too.
                let named = k.args.first().is_some_and(|a| a.starts_with("balancer://"));
                match &k.args[usize::from(named)..] {
                    [] => self.note(
                        k,
                        "BalancerMember names a balancer but no member URL: skipped",
                    ),
                    args => self.member(&name, args, k),
                }
            } else if k.is("ProxySet") {
                self.balancer_params(&name, &k.args, k);
            } else {
                self.note(k, format!("{} inside <Proxy>: not translated", k.name));
            }
        }
    }

    /// The balancer called `name` (made on first mention).
    fn balancer(&mut self, name: &str, d: &Directive) -> &mut Balancer {
        let i = match self.out.balancers.iter().position(|b| b.name == name) {
            Some(i) => i,
            None => {
                self.out.balancers.push(Balancer {
                    name: name.to_string(),
                    ..Balancer::default()
                });
                self.out.balancers.len() - 1
            }
        };
        let b = &mut self.out.balancers[i];
        let at = d.at();
        if !b.from.contains(&at) {
            b.from.push(at);
        }
        b
    }

    fn member(&mut self, balancer: &str, args: &[String], d: &Directive) {
        let (url, path) = split_member_url(&args[0]);
        if !path.is_empty() {
            let text = format!("BalancerMember {}: a member URL has no path in ringlb; the path {path} is dropped (give the route a member_path instead)", args[0]);
            self.note(d, text);
        }
        let ajp = url.to_ascii_lowercase().starts_with("ajp://");
        let (url, ws) = ws_as_http(&url);
        if ws {
            self.balancer(balancer, d).websocket = true;
        }
        let mut member = Member {
            url,
            keys: Vec::new(),
            from: d.at(),
        };
        for p in &args[1..] {
            let (k, val) = p.split_once('=').unwrap_or((p, ""));
            match params::member(&k.to_ascii_lowercase(), val, ajp) {
                Param::Member(key, value) => member.keys.push((key.into(), value)),
                Param::Balancer(key, value) => self.balancer_key(balancer, key, value, d),
                Param::Note(text) => self.note(d, format!("BalancerMember {p}: {text}")),
            }
        }
        self.balancer(balancer, d).members.push(member);
    }

    fn balancer_params(&mut self, name: &str, params: &[String], d: &Directive) {
        self.balancer(name, d);
        for p in params {
            let (k, val) = p.split_once('=').unwrap_or((p, ""));
            match params::balancer(&k.to_ascii_lowercase(), val) {
                Param::Balancer(key, value) => self.balancer_key(name, key, value, d),
                Param::Member(..) => {}
                Param::Note(text) => self.note(d, format!("ProxySet {p}: {text}")),
            }
        }
    }

    fn balancer_key(&mut self, name: &str, key: &str, value: String, d: &Directive) {
        let b = self.balancer(name, d);
        match b.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) if *v != value => {
                let was = v.clone();
                *v = value.clone();
                let text = format!("{key}: {was} and {value} for one balancer (ringlb has one per balancer): {value} kept");
                self.note(d, text);
            }
            Some(_) => {}
            None => b.keys.push((key.to_string(), value)),
        }
    }

    /// `Listen` ports no proxying host uses: said, not carried over.
    fn note_unused_listens(&mut self) {
        let listens = std::mem::take(&mut self.out.listens);
        for (port, at) in listens {
            let address = listen_address(&port);
            if !self.out.listeners.iter().any(|l| l.address == address) {
                let text =
                    format!("Listen {port}: no host on it proxies anything: not carried over");
                self.out.notes.push(Note { at, text });
            }
        }
    }

    /// A virtual host's routes and listeners.
    fn finish_vhost(&mut self, v: &Vhost, d: Option<&Directive>) {
        let at = d.map_or_else(String::new, Directive::at);
        let mut used = Vec::new();
        for (path, target, params, d) in &v.passes {
            if target == "!" {
                self.exclusion(v, path, d);
                continue;
            }
            let (target, params, upgrade) = upgrade_of(target, params);
            let Some((balancer, member_path)) = self.pass_target(&target, &params, d) else {
                continue;
            };
            if !used.contains(&balancer) {
                used.push(balancer.clone());
            }
            let from = d.at();
            let reverse = v.reverses.iter().any(|(p, ..)| same_path(p, path));
            let (path, member_path) = slashes(path, member_path, &from, &mut self.out.notes);
            let hosts = self.route_hosts(v);
            if member_path.is_some() && !reverse {
                let text = format!("ProxyPass {path}: no ProxyPassReverse: responses are not mapped back, as in Apache (reverse = false; remove that line to map them)");
                self.out.notes.push(Note {
                    at: from.clone(),
                    text,
                });
            }
            for host in hosts {
                self.out.routes.push(Route {
                    host,
                    path: path.clone(),
                    balancer: balancer.clone(),
                    reverse,
                    member_path: member_path.clone(),
                    preserve_host: v.preserve_host,
                    from: from.clone(),
                    exclude: false,
                    main_server: v.global,
                    upgrade: upgrade.clone(),
                    cookie_domains: match reverse {
                        true => v
                            .cookie_domains
                            .iter()
                            .map(|(f, t, _)| (f.clone(), t.clone()))
                            .collect(),
                        false => Vec::new(),
                    },
                });
            }
        }
        self.error_pages(v, &used);
        for (public, _, from) in &v.reverses {
            if !v.passes.iter().any(|(p, ..)| same_path(p, public)) {
                self.out.notes.push(Note { at: from.clone(), text: format!("ProxyPassReverse {public}: no ProxyPass with that path in this host: not translated") });
            }
        }
        for (from_domain, to_domain, at) in &v.cookie_domains {
            let reversed = v
                .passes
                .iter()
                .any(|(p, t, ..)| t != "!" && v.reverses.iter().any(|(rp, ..)| same_path(rp, p)));
            let text = match reversed {
                true => "translated as cookie_domains on this host's routes with ProxyPassReverse",
                false => "not translated: no ProxyPass with a ProxyPassReverse in this host",
            };
            self.out.notes.push(Note {
                at: at.clone(),
                text: format!("ProxyPassReverseCookieDomain {from_domain} {to_domain}: {text}"),
            });
        }
        for (from_path, to_path, from) in &v.cookie_paths {
            let covered = v.passes.iter().any(|(p, t, ..)| {
                same_path(p, to_path)
                    && t.trim_end_matches('/')
                        .ends_with(from_path.trim_end_matches('/'))
            });
            let text = match covered {
                true => "covered: a route with a member_path maps cookie paths back (reverse)",
                false => "not translated: ringlb maps cookie paths only from a route's member_path to its path",
            };
            self.out.notes.push(Note {
                at: from.clone(),
                text: format!("ProxyPassReverseCookiePath {from_path} {to_path}: {text}"),
            });
        }
        // A host that proxies nothing needs no listener, unless it redirects to https.
        let redirects = v.redirect_https && !v.tls;
        if v.passes.is_empty() && !redirects {
            return;
        }
        for port in &v.ports {
            self.listener(port, v, &at);
        }
    }

    /// A host's `ErrorDocument 502|503|504 /page` become `error_pages` of the balancers its
    /// routes use, with the file under `DocumentRoot` (when it is there to be read).
    fn error_pages(&mut self, v: &Vhost, balancers: &[String]) {
        if v.error_docs.is_empty() || balancers.is_empty() {
            return;
        }
        let mut pages = Vec::new();
        for (status, path, d) in &v.error_docs {
            let Some(root) = &v.document_root else {
                self.note(d, format!("ErrorDocument {status} {path}: no DocumentRoot to find the page in: not translated"));
                continue;
            };
            let file = format!("{root}{path}");
            if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                pages.push(format!("{status} = {}", super::quote::q(&file)));
            } else {
                self.note(
                    d,
                    format!(
                        "ErrorDocument {status} {path}: {file} is not a file here: not translated"
                    ),
                );
            }
        }
        if pages.is_empty() {
            return;
        }
        let value = format!("{{ {} }}", pages.join(", "));
        let d = &v.error_docs[0].2;
        for name in balancers {
            self.balancer_key(name, "error_pages", value.clone(), d);
        }
    }

    /// The hosts a virtual host's routes take: its names; with one proxying virtual host, Apache
    /// gives it every request on its address (the first vhost answers unknown names), so do
    /// routes without a host.
    fn route_hosts(&self, v: &Vhost) -> Vec<Option<String>> {
        match v.names.is_empty() || self.proxying_vhosts <= 1 {
            true => vec![None],
            false => v.names.iter().cloned().map(Some).collect(),
        }
    }

    /// `ProxyPass /path !`: a route that forwards nothing (404 from ringlb, which serves no
    /// files where Apache would serve its own). Apache takes the first `ProxyPass` that matches,
    /// ringlb the longest prefix: an exclusion written after a `ProxyPass` that covers it never
    /// applied in Apache, and does in ringlb; that is said.
    fn exclusion(&mut self, v: &Vhost, path: &str, d: &Directive) {
        let position = v.passes.iter().position(|(_, _, _, x)| x.at() == d.at());
        let shadowed = v.passes[..position.unwrap_or(0)].iter().find(|(p, t, ..)| {
            t != "!" && crate::route::strip_prefix(path.as_bytes(), p.as_bytes()).is_some()
        });
        let hidden: Vec<&str> = v.passes[position.map_or(0, |p| p + 1)..]
            .iter()
            .filter(|(p, t, ..)| {
                t != "!"
                    && p.len() > path.len()
                    && crate::route::strip_prefix(p.as_bytes(), path.as_bytes()).is_some()
            })
            .map(|(p, ..)| p.as_str())
            .collect();
        if !hidden.is_empty() {
            let text = format!("ProxyPass {path} !: Apache never forwarded {} (this exclusion, written before, takes those requests first); ringlb does (the longest prefix wins): move the exclusion below them in Apache, or remove those routes", hidden.join(", "));
            self.note(d, text);
        }
        let text = match shadowed {
            Some((p, ..)) => format!("ProxyPass {path} !: an exclusion: 404 from ringlb, which serves no files. Apache never applied it (ProxyPass {p}, written before it, takes these requests first); ringlb does (the longest prefix wins): move it up in Apache or remove the route"),
            None => format!("ProxyPass {path} !: an exclusion: ringlb answers 404 and forwards nothing (it serves no files: serve what Apache served here from the application or another server)"),
        };
        self.note(d, text);
        for host in self.route_hosts(v) {
            self.out.routes.push(Route {
                host,
                path: path.to_string(),
                exclude: true,
                main_server: v.global,
                from: d.at(),
                ..Route::default()
            });
        }
    }

    /// The balancer and member path a `ProxyPass` target names (a URL that is no balancer gets
    /// a balancer of its own).
    fn pass_target(
        &mut self,
        target: &str,
        params: &[String],
        d: &Directive,
    ) -> Option<(String, Option<String>)> {
        let Some((scheme, rest)) = target.split_once("://") else {
            self.note(d, format!("ProxyPass to {target}: not a URL"));
            return None;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let name = match scheme.to_ascii_lowercase().as_str() {
            "balancer" => {
                let name = authority.to_string();
                self.balancer_params(&name, params, d);
                name
            }
            s @ ("http" | "https" | "ajp") => {
                let name = format!("{s}_{}", authority.replace([':', '.', '[', ']'], "_"));
                let mut args = vec![format!("{s}://{authority}")];
                args.extend(params.iter().cloned());
                if !self.out.balancers.iter().any(|b| b.name == name) {
                    self.member(&name, &args, d);
                }
                name
            }
            _ => {
                self.note(d, format!("ProxyPass to {target}: scheme not supported"));
                return None;
            }
        };
        let member_path = Some(path.to_string());
        Some((name, member_path))
    }

    fn listener(&mut self, port: &str, v: &Vhost, at: &str) {
        let address = listen_address(port);
        let i = match self.out.listeners.iter().position(|l| l.address == address) {
            Some(i) => i,
            None => {
                self.out.listeners.push(Listener {
                    address,
                    ..Listener::default()
                });
                self.out.listeners.len() - 1
            }
        };
        let l = &mut self.out.listeners[i];
        if !at.is_empty() {
            l.from.push(at.to_string());
        }
        l.redirect_https |= v.redirect_https && !v.tls;
        if v.tls {
            match (&v.cert, &v.key) {
                (Some(c), Some(k)) => l.certs.push((c.clone(), k.clone())),
                _ => self.out.notes.push(Note { at: v.tls_at.clone(), text: "SSLEngine on without SSLCertificateFile and SSLCertificateKeyFile: the listener stays plain".into() }),
            }
        }
    }
}

/// A `ProxyPass` target and parameters without what says the route tunnels protocols: the
/// `upgrade=` parameter (a comma list; Apache's `ANY` and `*` are ringlb's `"any"`), and a
/// `ws://`/`wss://` scheme (mod_proxy_wstunnel), which becomes `http://`/`https://` with
/// `upgrade = ["websocket"]`.
fn upgrade_of(target: &str, params: &[String]) -> (String, Vec<String>, Vec<String>) {
    let mut upgrade = Vec::new();
    let mut rest = Vec::new();
    for p in params {
        match p.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("upgrade") => {
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let name = match name.to_ascii_lowercase() {
                        n if n == "*" => "any".to_string(),
                        n => n,
                    };
                    if name != "none" && !upgrade.contains(&name) {
                        upgrade.push(name);
                    }
                }
            }
            _ => rest.push(p.clone()),
        }
    }
    let (target, ws) = ws_as_http(target);
    if ws && upgrade.is_empty() {
        upgrade.push("websocket".into());
    }
    (target, rest, upgrade)
}

/// A `ws://`/`wss://` URL as the `http://`/`https://` one it is for ringlb, and whether it was one.
fn ws_as_http(url: &str) -> (String, bool) {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ws://") {
        (format!("http://{}", &url[5..]), true)
    } else if lower.starts_with("wss://") {
        (format!("https://{}", &url[6..]), true)
    } else {
        (url.to_string(), false)
    }
}

/// `path` and `member_path` made to agree on a trailing `/` (ringlb requires both or neither).
fn slashes(
    path: &str,
    member: Option<String>,
    from: &str,
    notes: &mut Vec<Note>,
) -> (String, Option<String>) {
    let Some(m) = member else {
        return (path.to_string(), None);
    };
    let m = if m.is_empty() { "/".to_string() } else { m };
    if m == path {
        return (path.to_string(), None);
    }
    if path.ends_with('/') == m.ends_with('/') {
        return (path.to_string(), Some(m));
    }
    let (p, mm) = (
        format!("{}/", path.trim_end_matches('/')),
        format!("{}/", m.trim_end_matches('/')),
    );
    notes.push(Note {
        at: from.into(),
        text: format!("ProxyPass {path} …{m}: one ends with / and the other not; translated as {p} → {mm} (a request for {} itself is not mapped)", path.trim_end_matches('/')),
    });
    if p == mm {
        (p, None)
    } else {
        (p, Some(mm))
    }
}

/// How many `<VirtualHost>` sections hold a `ProxyPass` (at any depth).
fn count_proxying(tree: &[Directive]) -> usize {
    fn proxies(list: &[Directive]) -> bool {
        list.iter()
            .any(|d| d.is("ProxyPass") || d.children.as_deref().is_some_and(proxies))
    }
    let mut n = 0;
    for d in tree {
        match &d.children {
            Some(kids) if d.is("VirtualHost") => n += usize::from(proxies(kids)),
            Some(kids) => n += count_proxying(kids),
            None => {}
        }
    }
    n
}

/// A `ServerName`/`ServerAlias` value as a route's host: lower case, without a scheme or port.
fn host_name(v: &str) -> String {
    let v = v.split_once("://").map_or(v, |(_, rest)| rest);
    let v = match v.strip_prefix('[') {
        Some(rest) => {
            return format!("[{}", rest.split(']').next().unwrap_or("")).to_ascii_lowercase() + "]"
        }
        None => v.split(':').next().unwrap_or(v),
    };
    v.to_ascii_lowercase()
}

/// A member URL without its path (ringlb members have none), and the path.
fn split_member_url(url: &str) -> (String, String) {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(i) => {
            let (base, path) = url.split_at(start + i);
            let path = path.trim_end_matches('/');
            (base.to_string(), path.to_string())
        }
        None => (url.to_string(), String::new()),
    }
}

/// The `[[listen]]` address of a port (`80`) or address (`192.0.2.1:80`, `[::]:80`).
fn listen_address(port: &str) -> String {
    match port.contains(':') {
        true => port.replace('*', "0.0.0.0"),
        false => format!("0.0.0.0:{port}"),
    }
}

/// Two paths the same but for a trailing `/`.
fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// `balancer://name/…` → `name`.
fn balancer_name(url: &str) -> String {
    let rest = url.trim_start_matches("balancer://");
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The port (or `address:port`) of a `<VirtualHost>` or `Listen` argument.
fn port_of(a: &str) -> String {
    match a.rsplit_once(':') {
        Some(("*" | "_default_" | "0.0.0.0", port)) => port.to_string(),
        Some((host, port)) if !host.is_empty() => format!("{host}:{port}"),
        _ if a.chars().all(|c| c.is_ascii_digit()) => a.to_string(),
        _ => "80".to_string(),
    }
}

/// A `RewriteRule` that sends every path to https on the same host.
fn rewrites_to_https(args: &[String]) -> bool {
    let every = [
        "^", "^/", "^(.*)$", "^/(.*)$", "(.*)", "^/?(.*)$", ".*", "^.*$",
    ];
    every.contains(&args.first().map_or("", String::as_str))
        && args.get(1).is_some_and(|t| {
            t.starts_with("https://%{HTTP_HOST}") || t.starts_with("https://%{SERVER_NAME}")
        })
        && args.get(2).is_some_and(|f| {
            f.contains("R=301") || f.contains("R=302") || f.contains("R]") || f.contains("R,")
        })
}

fn redirects_to_https(args: &[String]) -> bool {
    let (path, url) = match args.len() {
        2 => (&args[0], &args[1]),
        3 => (&args[1], &args[2]),
        _ => return false,
    };
    path == "/" && url.starts_with("https://")
}
