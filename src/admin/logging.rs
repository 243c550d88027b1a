//! Logging: `tracing` to stderr, or to a rolling file (time-based rotation, a bounded number of
//! files kept), with the level changeable at runtime (AdminServer `zkd_log_level?level=debug`).
//!
//! zoo.cfg keys (zkd's own): `zkd.log.dir` (unset: stderr), `zkd.log.level` (default `info`;
//! the `ZKD_LOG` environment variable wins), `zkd.log.rotation` (`daily` | `hourly` | `minutely`
//! | `never`, default daily), `zkd.log.maxFiles` (default 7), `zkd.log.file` (name prefix, default
//! `zkd`). The default level never logs one line per connection: per-connection events are at
//! DEBUG, and limits/churn are summarized per IP per interval.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    pub dir: Option<PathBuf>,
    pub level: String,
    pub rotation: String,
    pub max_files: usize,
    pub prefix: String,
}

impl LogOptions {
    /// From zoo.cfg's `zkd.*` keys; unknown rotation names are an error naming the key.
    pub fn from_zkd_keys(keys: &BTreeMap<String, String>) -> Result<LogOptions, String> {
        let rotation = keys.get("zkd.log.rotation").cloned().unwrap_or_else(|| "daily".into());
        if !["daily", "hourly", "minutely", "never"].contains(&rotation.as_str()) {
            return Err(format!("zkd.log.rotation={rotation:?}: expected daily, hourly, minutely or never"));
        }
        let max_files = match keys.get("zkd.log.maxFiles") {
            None => 7,
            Some(v) => v.parse().map_err(|_| format!("zkd.log.maxFiles={v:?}: expected a number"))?,
        };
        let level = keys.get("zkd.log.level").cloned().unwrap_or_else(|| "info".into());
        EnvFilter::try_new(&level).map_err(|e| format!("zkd.log.level={level:?}: {e}"))?;
        Ok(LogOptions {
            dir: keys.get("zkd.log.dir").map(PathBuf::from),
            level,
            rotation,
            max_files,
            prefix: keys.get("zkd.log.file").cloned().unwrap_or_else(|| "zkd".into()),
        })
    }
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            dir: None,
            level: "info".into(),
            rotation: "daily".into(),
            max_files: 7,
            prefix: "zkd".into(),
        }
    }
}

type Setter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Changes the active filter at runtime.
pub struct LogControl {
    set: Setter,
    current: Mutex<String>,
}

impl LogControl {
    pub fn level(&self) -> String {
        self.current.lock().clone()
    }
    /// Sets a filter (`debug`, `info,zkd::shard=trace`, ...).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(level).map_err(|e| format!("bad log level {level:?}: {e}"))?;
        (self.set)(f)?;
        tracing::info!("log level set to {level}");
        *self.current.lock() = level.to_string();
        Ok(())
    }
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// The process's log control, once `init` ran.
pub fn global() -> Option<&'static LogControl> {
    CONTROL.get()
}

/// Keeps the file writer's worker alive; drop it last (flushes).
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Installs the global subscriber. Call once, early.
pub fn init(opts: &LogOptions) -> Result<LogGuard, String> {
    let level = std::env::var("ZKD_LOG").unwrap_or_else(|_| opts.level.clone());
    let filter = EnvFilter::try_new(&level).map_err(|e| format!("log level {level:?}: {e}"))?;
    let (filter, handle) = reload::Layer::<EnvFilter, Registry>::new(filter);
    let mut guard = None;
    match &opts.dir {
        None => {
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .try_init()
                .map_err(|e| e.to_string())?;
        }
        Some(dir) => {
            use tracing_appender::rolling::{RollingFileAppender, Rotation};
            let rotation = match opts.rotation.as_str() {
                "hourly" => Rotation::HOURLY,
                "minutely" => Rotation::MINUTELY,
                "never" => Rotation::NEVER,
                _ => Rotation::DAILY,
            };
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log dir {}: {e}", dir.display()))?;
            let appender = RollingFileAppender::builder()
                .rotation(rotation)
                .filename_prefix(&opts.prefix)
                .filename_suffix("log")
                .max_log_files(opts.max_files.max(1))
                .build(dir)
                .map_err(|e| format!("cannot open a log file in {}: {e}", dir.display()))?;
            let (writer, g) = tracing_appender::non_blocking(appender);
            guard = Some(g);
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer))
                .try_init()
                .map_err(|e| e.to_string())?;
        }
    }
    let set: Setter = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
    let _ = CONTROL.set(LogControl { set, current: Mutex::new(level) });
    Ok(LogGuard(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_zoo_cfg_keys() {
        let mut k = BTreeMap::new();
        assert_eq!(LogOptions::from_zkd_keys(&k).unwrap(), LogOptions::default());
        k.insert("zkd.log.dir".to_string(), "/var/log/zkd".to_string());
        k.insert("zkd.log.rotation".to_string(), "hourly".to_string());
        k.insert("zkd.log.maxFiles".to_string(), "3".to_string());
        let o = LogOptions::from_zkd_keys(&k).unwrap();
        assert_eq!(
            (o.dir.unwrap(), o.rotation.as_str(), o.max_files),
            (PathBuf::from("/var/log/zkd"), "hourly", 3)
        );
        k.insert("zkd.log.rotation".to_string(), "weekly-ish".to_string());
        assert!(LogOptions::from_zkd_keys(&k).unwrap_err().contains("zkd.log.rotation"));
    }
}
