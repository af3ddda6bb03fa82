//! Broker configuration: every knob with its default, loadable from TOML.
//!
//! The keys are the command-line flag names with `-` replaced by `_`
//! (`--max-queue-memory` is `max_queue_memory`), see
//! [`BrokerArgs`](crate::cli::BrokerArgs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stomp_frame::Limits;

/// What happens to a topic subscriber whose connection has more than
/// [`Config::max_write_backlog`] bytes waiting to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumerPolicy {
    /// Send an ERROR that says so and close the connection.
    #[default]
    Disconnect,
    /// Drop the topic messages that do not fit, keep the connection.
    Drop,
}

/// Which `/queue/` messages the durable store writes to disk.
///
/// The default is [`All`](Persist::All): see the README's "Durability"
/// section for why (STOMP itself has no `persistent` header; ActiveMQ and
/// RabbitMQ persist only `persistent:true` SENDs, which is [`Persistent`](Persist::Persistent)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Persist {
    /// Every message sent to a queue survives a restart.
    #[default]
    All,
    /// Only messages sent with `persistent:true`; the others live in memory.
    Persistent,
}

impl Persist {
    /// The flag value (`all`, `persistent`).
    pub fn as_str(self) -> &'static str {
        match self {
            Persist::All => "all",
            Persist::Persistent => "persistent",
        }
    }
}

/// The data directory used when neither `--data-dir` nor `--memory` is
/// given: `data` in the current directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Default of [`Config::max_connections_per_ip`]: a fifth of
/// `max-connections`, so one host (or one NAT) cannot take the whole broker,
/// while the 10,000-connection benchmark from one machine still fits.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 20_000;

/// Default of [`Config::max_memory`] (so of each queue's limit too, unless
/// [`Config::max_queue_memory`] is set): 40% of the memory this process may use,
/// the machine's or its cgroup's limit if lower (RabbitMQ's default high
/// watermark); 512 MiB where neither can be read. At least 64 MiB.
pub fn default_max_memory() -> usize {
    const FALLBACK: u64 = 512 * 1024 * 1024;
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    });
    // cgroup v2 says "max" when there is no limit.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let usable = match (ram, cgroup) {
        (Some(r), Some(c)) => r.min(c),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => return FALLBACK as usize,
    };
    usize::try_from((usable / 10 * 4).max(64 * 1024 * 1024)).unwrap_or(usize::MAX)
}

/// Everything the broker can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to accept STOMP over TCP on (`host:port`).
    pub listen: Vec<String>,
    /// Keep messages in memory only (no data directory).
    pub memory: bool,
    /// Directory of the message journal (default: [`DEFAULT_DATA_DIR`]
    /// in the current directory, unless `memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Which queued messages are written to disk.
    pub persist: Persist,
    /// Size of a journal segment file, bytes (a message must fit in one).
    pub segment_size: u64,
    /// `fdatasync` each group commit before its RECEIPTs go out. Off is for
    /// tests and benchmarks: nothing survives a power cut then.
    pub fsync: bool,
    /// Group commit window, µs: how long the journal's writer may wait for
    /// more producers to share an fsync (never longer than the last write
    /// took; 0 = never wait).
    pub group_window_us: u64,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: String,
    /// Prefix of point-to-point destinations.
    pub queue_prefix: String,
    /// Prefix of fan-out destinations.
    pub topic_prefix: String,
    /// Default per-subscription window of unacknowledged messages.
    pub prefetch: u32,
    /// Deliveries after which a returned message goes to the dead-letter queue.
    pub max_deliveries: u32,
    /// Prefix of dead-letter queues (`/queue/DLQ.` makes `/queue/a` -> `/queue/DLQ.a`).
    pub dlq_prefix: String,
    /// Smallest heart-beat interval the broker sends or expects, ms.
    pub heartbeat_min: u32,
    /// Largest heart-beat interval the broker sends or expects, ms.
    pub heartbeat_max: u32,
    /// A connection silent for the negotiated interval times this is closed.
    pub heartbeat_grace: f64,
    /// Largest frame (head and body), bytes.
    pub max_frame_size: usize,
    /// Largest body, bytes.
    pub max_body_size: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest command or header line, bytes.
    pub max_header_line: usize,
    /// Bytes queued for writing to one connection before it counts as slow.
    pub max_write_backlog: usize,
    /// What to do with a topic subscriber over its write backlog.
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Milliseconds a topic subscriber may stay over half its write backlog
    /// while the topic's producers wait for it; after that it no longer holds
    /// them back and meets [`slow_consumer_policy`](Config::slow_consumer_policy)
    /// when its backlog fills.
    pub slow_consumer_timeout: u64,
    /// Message bytes one queue may hold before producers are paused;
    /// `None` (the default): as [`max_memory`](Config::max_memory), no
    /// limit of its own. See [`queue_memory`](Config::queue_memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_memory: Option<usize>,
    /// Message bytes the broker may hold before producers are paused
    /// (default: [`default_max_memory`], 40% of the machine's memory).
    pub max_memory: usize,
    /// Bytes of frames begun and not finished (in all connections' read
    /// buffers) before connections in the middle of a frame are read one
    /// at a time; `None`: a quarter of `max_memory`.
    pub max_input_memory: Option<usize>,
    /// Connections accepted at once; more are answered with an ERROR and closed.
    pub max_connections: usize,
    /// Users file (argon2 password hashes, groups, ACL); `None` lets
    /// everyone in (see [`crate::auth`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    /// Connections at once from one IP address; more are refused like
    /// over [`max_connections`](Config::max_connections).
    pub max_connections_per_ip: usize,
    /// Password checks (argon2, tens of milliseconds each, on a few
    /// threads) waiting at once for one IP address; past it a CONNECT gets
    /// ERROR `too many logins` + close, so that one address cannot queue
    /// minutes of checks ahead of everyone else's logins.
    pub max_pending_logins_per_ip: usize,
    /// Milliseconds a new connection has to send CONNECT; then ERROR + close.
    pub connect_timeout: u64,
    /// Milliseconds a connection may stay silent in the middle of a frame
    /// (some of it received, not the end); then ERROR `incomplete frame` +
    /// close. 0: never.
    pub frame_timeout: u64,
    /// Subscriptions one connection may hold; one more is an ERROR.
    pub max_subscriptions: usize,
    /// Transactions one connection may have open; one more BEGIN is an ERROR.
    pub max_transactions: usize,
    /// Frames one connection may send per second (0: no limit); more is an
    /// ERROR and the connection is closed.
    pub max_frame_rate: u32,
    /// Addresses to accept STOMP over TLS on (needs `tls_cert` and `tls_key`).
    pub tls_listen: Vec<String>,
    /// PEM certificate chain of the TLS listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec!["127.0.0.1:61613".to_owned()],
            memory: false,
            data_dir: None,
            persist: Persist::All,
            segment_size: 64 * 1024 * 1024,
            fsync: true,
            group_window_us: 500,
            log_level: "info".to_owned(),
            queue_prefix: "/queue/".to_owned(),
            topic_prefix: "/topic/".to_owned(),
            prefetch: 1000,
            max_deliveries: 7,
            dlq_prefix: "/queue/DLQ.".to_owned(),
            heartbeat_min: 100,
            heartbeat_max: 3_600_000,
            heartbeat_grace: 1.5,
            max_frame_size: Limits::DEFAULT.max_frame_len,
            max_body_size: Limits::DEFAULT.max_body_len,
            max_headers: Limits::DEFAULT.max_headers,
            max_header_line: Limits::DEFAULT.max_line_len,
            max_write_backlog: 8 * 1024 * 1024,
            slow_consumer_policy: SlowConsumerPolicy::Disconnect,
            slow_consumer_timeout: 5000,
            max_queue_memory: None,
            max_memory: default_max_memory(),
            max_input_memory: None,
            max_connections: 100_000,
            users: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_pending_logins_per_ip: 64,
            connect_timeout: 10_000,
            frame_timeout: 30_000,
            max_subscriptions: 1000,
            max_transactions: 100,
            max_frame_rate: 0,
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A configuration that cannot be used, with what to fix.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid value for {key}: {message}")]
    Invalid {
        /// The flag / key.
        key: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; missing keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".to_owned(),
            message: e.to_string(),
        })
    }

    /// Makes the default dead-letter prefix follow a changed queue prefix:
    /// with `--queue-prefix /q/` and no `--dlq-prefix`, `/q/a` dead-letters
    /// to `/q/DLQ.a`. A `dlq_prefix` set to anything else is kept.
    pub fn follow_queue_prefix(&mut self) {
        let default = Config::default();
        if self.dlq_prefix == default.dlq_prefix && self.queue_prefix != default.queue_prefix {
            self.dlq_prefix = format!("{}DLQ.", self.queue_prefix);
        }
    }

    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.listen.is_empty() {
            return bad(
                "listen",
                "give at least one address, as 127.0.0.1:61613".into(),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return bad(
                "log-level",
                format!(
                    "{:?}; use error, warn, info, debug or trace",
                    self.log_level
                ),
            );
        }
        if self.queue_prefix.is_empty() || self.topic_prefix.is_empty() {
            return bad(
                "queue-prefix/topic-prefix",
                "prefixes must not be empty".into(),
            );
        }
        if self.queue_prefix.starts_with(&self.topic_prefix)
            || self.topic_prefix.starts_with(&self.queue_prefix)
        {
            return bad(
                "queue-prefix/topic-prefix",
                format!(
                    "{:?} and {:?} overlap; one must not start with the other",
                    self.queue_prefix, self.topic_prefix
                ),
            );
        }
        if !self.dlq_prefix.starts_with(&self.queue_prefix)
            || self.dlq_prefix.len() == self.queue_prefix.len()
        {
            return bad(
                "dlq-prefix",
                format!(
                    "{:?} must start with the queue prefix {:?} and be longer",
                    self.dlq_prefix, self.queue_prefix
                ),
            );
        }
        if self.memory && self.data_dir.is_some() {
            return bad(
                "memory/data-dir",
                "--memory keeps nothing on disk and --data-dir names where to keep it: give one of them".into(),
            );
        }
        if self.segment_size < 4096 {
            return bad(
                "segment-size",
                format!("{}; must be at least 4096 bytes", self.segment_size),
            );
        }
        if !self.tls_listen.is_empty() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return bad(
                "tls-listen",
                "give --tls-cert FILE and --tls-key FILE (PEM) with --tls-listen".into(),
            );
        }
        if self.tls_listen.is_empty() && (self.tls_cert.is_some() || self.tls_key.is_some()) {
            return bad(
                "tls-cert/tls-key",
                "they are only used with --tls-listen ADDR: add it, or drop them".into(),
            );
        }
        if self.max_body_size > self.max_frame_size {
            return bad(
                "max-body-size",
                format!(
                    "{} is more than max-frame-size {}: no frame could carry such a body; raise --max-frame-size too",
                    self.max_body_size, self.max_frame_size
                ),
            );
        }
        if self.prefetch == 0 {
            return bad("prefetch", "must be at least 1".into());
        }
        if self.max_deliveries == 0 {
            return bad("max-deliveries", "must be at least 1".into());
        }
        if self.heartbeat_min == 0 || self.heartbeat_min > self.heartbeat_max {
            return bad(
                "heartbeat-min/heartbeat-max",
                format!(
                    "need 0 < heartbeat-min <= heartbeat-max (got {} and {})",
                    self.heartbeat_min, self.heartbeat_max
                ),
            );
        }
        if !(1.0..=1000.0).contains(&self.heartbeat_grace) {
            return bad(
                "heartbeat-grace",
                format!(
                    "{}; must be a number from 1.0 to 1000",
                    self.heartbeat_grace
                ),
            );
        }
        for (key, v) in [
            ("max-frame-size", self.max_frame_size),
            ("max-body-size", self.max_body_size),
            ("max-headers", self.max_headers),
            ("max-header-line", self.max_header_line),
            ("max-write-backlog", self.max_write_backlog),
            ("max-queue-memory", self.queue_memory()),
            ("max-memory", self.max_memory),
            ("max-connections", self.max_connections),
            ("max-connections-per-ip", self.max_connections_per_ip),
            ("max-pending-logins-per-ip", self.max_pending_logins_per_ip),
            ("max-subscriptions", self.max_subscriptions),
            ("max-transactions", self.max_transactions),
            ("connect-timeout", self.connect_timeout as usize),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The decoder limits these settings describe.
    pub fn limits(&self) -> Limits {
        Limits {
            max_line_len: self.max_header_line,
            max_headers: self.max_headers,
            max_body_len: self.max_body_size,
            max_frame_len: self.max_frame_size,
        }
    }

    /// The decoder limits until a client has logged in: its frame (the
    /// CONNECT, a few short headers) may be at most one header line long
    /// (`max_header_line`, 64 KiB), not `max_frame_size` (17 MiB): before
    /// login, 20 connections could each make the broker hold 17 MiB.
    pub fn connect_limits(&self) -> Limits {
        let most = self.max_header_line.min(self.max_frame_size);
        Limits {
            max_frame_len: most,
            max_body_len: self.max_body_size.min(most),
            ..self.limits()
        }
    }

    /// Message bytes one queue may hold: `max_queue_memory`, or
    /// `max_memory` when that is not set.
    pub fn queue_memory(&self) -> usize {
        self.max_queue_memory.unwrap_or(self.max_memory)
    }

    /// Bytes of unfinished frames the broker may hold (see
    /// [`max_input_memory`](Config::max_input_memory)).
    pub fn input_memory(&self) -> usize {
        self.max_input_memory.unwrap_or(self.max_memory / 4)
    }

    /// The data directory of the durable store, or `None` with `memory`.
    pub fn store_dir(&self) -> Option<PathBuf> {
        if self.memory {
            None
        } else {
            Some(
                self.data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            )
        }
    }

    /// `heartbeat_grace` applied to an interval.
    pub(crate) fn grace(&self, interval: Duration) -> Duration {
        interval.mul_f64(self.heartbeat_grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::default();
        assert_eq!(c.listen, ["127.0.0.1:61613"]);
        assert_eq!(c.prefetch, 1000);
        assert_eq!(c.max_deliveries, 7);
        assert_eq!(c.max_frame_size, 17_825_792);
        assert_eq!(c.max_body_size, 16_777_216);
        assert_eq!(c.max_write_backlog, 8_388_608);
        // 40% of this machine's memory, for the broker and for each queue.
        assert_eq!(c.max_memory, default_max_memory());
        assert_eq!(c.max_queue_memory, None);
        assert_eq!(c.queue_memory(), c.max_memory);
        assert!(c.max_memory >= 64 * 1024 * 1024);
        assert_eq!(c.persist, Persist::All);
        assert!(c.fsync);
        assert_eq!(c.store_dir(), Some(PathBuf::from("data")));
        c.validate().unwrap();
    }

    #[test]
    fn toml_keys_are_flag_names() {
        let c = Config::from_toml(
            "listen = ['127.0.0.1:0']\nprefetch = 5\nslow_consumer_policy = 'drop'\nheartbeat_grace = 2.0\n",
        )
        .unwrap();
        assert_eq!(c.prefetch, 5);
        assert_eq!(c.slow_consumer_policy, SlowConsumerPolicy::Drop);
        assert!(Config::from_toml("prefech = 5").is_err());
        let err = Config::from_toml("prefetch = 'x'").unwrap_err().to_string();
        assert!(err.contains("prefetch"), "{err}");
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        // Each is refused with a message that names what to fix.
        let refused = |c: Config, names: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(names), "{e}");
        };
        let d = Config::default;
        refused(
            Config {
                heartbeat_grace: 0.5,
                ..d()
            },
            "heartbeat-grace",
        );
        refused(
            Config {
                heartbeat_grace: 1e300,
                ..d()
            },
            "heartbeat-grace",
        );
        refused(
            Config {
                dlq_prefix: "/dead/".into(),
                ..d()
            },
            "dlq-prefix",
        );
        refused(
            Config {
                memory: true,
                data_dir: Some("x".into()),
                ..d()
            },
            "--memory",
        );
        refused(
            Config {
                tls_cert: Some("cert.pem".into()),
                ..d()
            },
            "--tls-listen",
        );
        refused(
            Config {
                max_body_size: 64 << 20,
                ..d()
            },
            "raise --max-frame-size",
        );
        let c = Config::from_toml("data_dir = '/tmp/q'\npersist = 'persistent'\nfsync = false\n")
            .unwrap();
        assert_eq!(c.store_dir(), Some(PathBuf::from("/tmp/q")));
        assert_eq!((c.persist, c.fsync), (Persist::Persistent, false));
    }
}
