//! The token that the status page's forms carry, so that a page elsewhere cannot make a logged-in
//! browser change members (HTTP Basic credentials are sent by the browser on its own).
//!
//! Owns: one random token per process, made from the kernel's random source the first time it is
//! asked for, and its comparison. Must never: hand out a predictable token (if the random source
//! cannot be read, there is no token and every form is refused) or compare in time that depends
//! on where the strings differ.

use std::io::Read;
use std::sync::OnceLock;

static TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// The process's form token (32 hex digits), or `None` when no randomness was available.
pub fn token() -> Option<&'static str> {
    TOKEN
        .get_or_init(|| {
            let mut bytes = [0u8; 16];
            let mut f = std::fs::File::open("/dev/urandom").ok()?;
            f.read_exact(&mut bytes).ok()?;
            Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
        })
        .as_deref()
}

/// Whether `given` is this process's token.
pub fn valid(given: &str) -> bool {
    token().is_some_and(|t| super::auth::same_secret(given.as_bytes(), t.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_random_token_per_process() {
        let t = super::token().expect("/dev/urandom");
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(super::token(), Some(t));
        assert!(super::valid(t));
        assert!(!super::valid(&t[1..]));
        let last = if t.ends_with('0') { '1' } else { '0' };
        assert!(!super::valid(&format!("{}{last}", &t[..31])));
        assert!(!super::valid(""));
    }
}
