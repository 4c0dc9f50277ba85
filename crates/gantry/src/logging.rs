//! Log output of `gantry serve`: text or JSON lines on stderr, shaped for where stderr goes.
//!
//! Under systemd, stderr is a stream into journald, which stamps every line itself and reads
//! a `<N>` syslog priority prefix (sd-daemon(3)): there, text lines carry that prefix instead
//! of our own timestamp, and no colour codes. systemd says so by setting `JOURNAL_STREAM` to
//! the stream's `device:inode` (systemd.exec(5)); it counts only when stderr is still that
//! stream (a child whose stderr was redirected inherits the variable too). JSON lines stay as
//! they are for collectors that parse them.

use std::fmt;

use anyhow::Context;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber: `format` lines at `level` (an `EnvFilter` directive) on
/// stderr.
///
/// Errors: `level` is not a valid filter.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("log filter {level:?} is invalid; use a level such as info or debug")
    })?;
    let journal = stderr_is_journal();
    // Colour codes only where a person reads them: a file, a pipe or a log collector gets plain
    // text. NO_COLOR (https://no-color.org) turns colour off on a terminal too.
    let colour = !journal
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match (format, journal) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).init(),
        (LogFormat::Text, true) => builder
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init(),
        (LogFormat::Text, false) => builder.init(),
    }
    Ok(())
}

/// Whether stderr is the journald stream systemd announced in `JOURNAL_STREAM`.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(announced) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|file| file.metadata());
    match (announced.to_str(), stderr) {
        (Some(announced), Ok(meta)) => names_stream(announced, meta.dev(), meta.ino()),
        _ => false,
    }
}

/// Whether `JOURNAL_STREAM`'s value (`device:inode`, decimal) names the file `dev`/`ino`.
fn names_stream(announced: &str, dev: u64, ino: u64) -> bool {
    announced
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority journald reads from a line's `<N>` prefix (sd-daemon(3)).
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each line of the inner format with its journald priority.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_counts_only_for_the_announced_device_and_inode() {
        assert!(names_stream("64769:123456", 64769, 123456));
        assert!(!names_stream("64769:123456", 64769, 123457));
        assert!(!names_stream("64769", 64769, 123456));
        assert!(!names_stream("", 0, 0));
        assert!(!names_stream("a:b", 0, 0));
    }

    #[test]
    fn journald_priorities_follow_syslog_levels() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
