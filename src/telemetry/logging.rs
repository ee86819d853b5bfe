//! Log set-up: `tracing` events to stderr, one plain line each.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable read first for the log filter (`RUST_LOG` is read when it is unset).
pub const LOG_ENV: &str = "SPECWATCH_LOG";

/// Installs the process-wide `tracing` subscriber.
///
/// The filter comes from `SPECWATCH_LOG`, else `RUST_LOG`, else `info`; it uses the
/// `tracing-subscriber` directive syntax (`info`, `specwatch=debug,axum=warn`, …). A filter that
/// does not parse falls back to `info` and says so in the log. Lines go to stderr, with colours
/// only when stderr is a terminal, so that journald records plain text. Calling it again (or
/// after another subscriber was installed, as test harnesses do) changes nothing.
pub fn init_logging() {
    let (directives, source) = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => (v, LOG_ENV),
        _ => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
            _ => ("info".to_owned(), "the default"),
        },
    };
    let (filter, rejected) = match EnvFilter::try_new(&directives) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    if installed && let Some(e) = rejected {
        tracing::warn!(
            "log filter {directives:?} from {source} is not valid ({e}); logging at info instead"
        );
    }
}
