//! A balancer's `error_pages` (Apache's `ErrorDocument 503 /maintenance.html` for the errors the
//! proxy itself answers): a local file per gateway status, 502, 503 or 504, served as the body of
//! that error with its status.
//!
//! Owns: the key's shape, reading the files (at every parse: `ringlb check`, start and reload, so a
//! missing file is a config error with the key and line, and an edited page is taken by a reload)
//! and each page's Content-Type. Must never: accept a status other than 502/503/504 (a page cannot
//! turn an error into a success), a relative path (the service's working directory is not the
//! config's), or a file larger than `MAX_PAGE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::{ConfigError, Validator};

/// The largest page: it is copied into the connection's buffer for each error it answers.
pub const MAX_PAGE: usize = 64 * 1024;

/// One page: its Content-Type and bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorPage {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The pages of a balancer, by status.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    pages: [Option<Arc<ErrorPage>>; 3],
}

impl ErrorPages {
    /// The page for `status`, if one is configured.
    pub fn get(&self, status: u16) -> Option<&ErrorPage> {
        let i = status.checked_sub(502).filter(|&i| i < 3)?;
        self.pages[i as usize].as_deref()
    }
}

pub(super) type RawErrorPages = Spanned<BTreeMap<String, Spanned<String>>>;

/// The Content-Type of a page, from its file name.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

/// The first `limit` bytes of `file` (a device like /dev/zero never ends).
fn read_at_most(file: &str, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(file)?
        .take(limit as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}

impl Validator<'_> {
    pub(super) fn error_pages(
        &self,
        raw: Option<&RawErrorPages>,
        key: &str,
    ) -> Result<ErrorPages, ConfigError> {
        let mut out = ErrorPages::default();
        let Some(raw) = raw else {
            return Ok(out);
        };
        for (status, path) in raw.get_ref() {
            let slot = match status.as_str() {
                "502" => 0,
                "503" => 1,
                "504" => 2,
                _ => {
                    return self.err(
                        raw.span(),
                        format!("{key}.error_pages"),
                        format!("\"{status}\": only 502, 503 and 504 have pages (the errors ringlb answers for a balancer)"),
                    )
                }
            };
            let file = path.get_ref();
            let name = format!("{key}.error_pages.{status}");
            if !file.starts_with('/') {
                return self.err(
                    path.span(),
                    name,
                    format!("\"{file}\": use an absolute path"),
                );
            }
            let body = match read_at_most(file, MAX_PAGE + 1) {
                Ok(b) if b.len() <= MAX_PAGE => b,
                Ok(_) => {
                    return self.err(
                        path.span(),
                        name,
                        format!("{file} is larger than {MAX_PAGE} bytes"),
                    )
                }
                Err(e) => return self.err(path.span(), name, format!("cannot read {file}: {e}")),
            };
            out.pages[slot] = Some(Arc::new(ErrorPage {
                content_type: content_type(file),
                body,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::error_of;
    use crate::config::Config;

    fn with(pages: &str) -> String {
        format!("[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"app\"\nmembers = [{{ url = \"http://127.0.0.1:1\" }}]\n{pages}\n[[route]]\npath = \"/\"\nbalancer = \"app\"\n")
    }

    #[test]
    fn pages_are_read_with_their_type_and_checked() {
        let dir = std::env::temp_dir().join(format!("ringlb-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("maintenance.html");
        std::fs::write(&page, "<h1>Back soon</h1>").unwrap();
        let c = Config::parse(&with(&format!(
            "error_pages = {{ 503 = \"{}\" }}",
            page.display()
        )))
        .unwrap();
        let pages = &c.balancers[0].error_pages;
        let p = pages.get(503).expect("the 503 page");
        assert_eq!(p.body, b"<h1>Back soon</h1>");
        assert_eq!(p.content_type, "text/html; charset=utf-8");
        assert!(pages.get(502).is_none() && pages.get(404).is_none() && pages.get(0).is_none());
        let (line, key, _) = error_of(&with("error_pages = { 200 = \"/x.html\" }"));
        assert_eq!((line, key.as_str()), (6, "balancer[0].error_pages"));
        let (line, key, _) = error_of(&with("error_pages = { 502 = \"x.html\" }"));
        assert_eq!((line, key.as_str()), (6, "balancer[0].error_pages.502"));
        let missing = dir.join("missing.html");
        let (_, key, msg) = error_of(&with(&format!(
            "error_pages = {{ 504 = \"{}\" }}",
            missing.display()
        )));
        assert_eq!(key, "balancer[0].error_pages.504");
        assert!(msg.contains("cannot read"), "{msg}");
        std::fs::write(&page, vec![b'x'; super::MAX_PAGE + 1]).unwrap();
        let (_, _, msg) = error_of(&with(&format!(
            "error_pages = {{ 503 = \"{}\" }}",
            page.display()
        )));
        assert!(msg.contains("larger than"), "{msg}");
        let (_, _, msg) = error_of(&with("error_pages = { 503 = \"/dev/zero\" }"));
        assert!(msg.contains("larger than"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
