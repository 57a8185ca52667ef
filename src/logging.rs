//! Where ringlb's own log lines go and how they look: stderr, with a timestamp and a level word
//! (colours on a terminal), or, when stderr is the systemd journal (`JOURNAL_STREAM` names
//! stderr's device and inode, systemd's documented check), one line per event prefixed with its
//! syslog priority (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug and trace) and no timestamp
//! of its own (the journal stamps every line).
//!
//! Owns: the subscriber set-up and the journal line format. Must never: panic on a log call, write
//! colour codes into the journal, or decide anything from `JOURNAL_STREAM` alone (a child that
//! inherited the variable with stderr redirected elsewhere logs as on a terminal or a file).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's subscriber at `level` (an `EnvFilter` directive for ringlb).
pub fn init(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("ringlb={level}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ringlb=info"));
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .is_some_and(|v| stderr_is(&v));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if journal {
        builder.with_ansi(false).event_format(Journal).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Whether `journal_stream` (`JOURNAL_STREAM`: `<device>:<inode>`, decimal) names the file
/// stderr is.
fn stderr_is(journal_stream: &str) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(wanted) = parse_journal_stream(journal_stream) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => (m.dev(), m.ino()) == wanted,
        Err(_) => false,
    }
}

/// `<device>:<inode>` as numbers.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority the journal files a line of `level` under.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The journal's line: `<N>` then the message and its fields, nothing else.
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
        assert_eq!(parse_journal_stream(""), None);
        // A variable that names another file is not stderr.
        assert!(!stderr_is("0:0"));
        assert!(!stderr_is("garbage"));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
