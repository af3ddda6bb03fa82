//! The command line (`stomp-broker`, and `stomp broker` which flattens
//! [`BrokerArgs`]) and [`run`], which serves until SIGINT/SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{Config, Persist, SlowConsumerPolicy};
use crate::server::Broker;

/// Flags of the broker. Each may also be set in the TOML file given by
/// `--config` (key = flag name with `_` for `-`); flags win over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// TOML file with settings (keys are the flag names with `_` for `-`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to accept STOMP over TCP (repeatable) [default: 127.0.0.1:61613].
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Keep messages in memory only: nothing survives a restart, no data directory.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory: bool,
    /// Directory of the message journal; queued messages survive restarts
    /// and crashes [default: ./data, i.e. `data` in the current directory,
    /// unless --memory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Which /queue/ messages are stored: all, or only those sent with
    /// `persistent:true` [default: all].
    #[arg(long, value_name = "WHICH")]
    pub persist: Option<Persist>,
    /// Size of a journal segment file; a message must fit in one [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub segment_size: Option<u64>,
    /// fdatasync each group commit before its RECEIPTs go out; false is for
    /// tests and benchmarks only [default: true].
    #[arg(long, value_name = "BOOL")]
    pub fsync: Option<bool>,
    /// Group commit window, µs: how long the journal may wait for more
    /// producers to share an fsync [default: 500].
    #[arg(long, value_name = "US")]
    pub group_window_us: Option<u64>,
    /// Log level: error, warn, info, debug, trace [default: info]; RUST_LOG, when set, replaces it (filter syntax of tracing-subscriber, e.g. `stomp_broker=debug`).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Prefix of point-to-point destinations [default: /queue/].
    #[arg(long, value_name = "P")]
    pub queue_prefix: Option<String>,
    /// Prefix of fan-out destinations [default: /topic/].
    #[arg(long, value_name = "P")]
    pub topic_prefix: Option<String>,
    /// Per-subscription window of unacknowledged messages [default: 1000].
    #[arg(long, value_name = "N")]
    pub prefetch: Option<u32>,
    /// Deliveries after which a message goes to the dead-letter queue [default: 7].
    #[arg(long, value_name = "N")]
    pub max_deliveries: Option<u32>,
    /// Prefix of dead-letter queues [default: the queue prefix + DLQ., so /queue/DLQ.].
    #[arg(long, value_name = "P")]
    pub dlq_prefix: Option<String>,
    /// Smallest heart-beat interval sent or expected, ms [default: 100].
    #[arg(long, value_name = "MS")]
    pub heartbeat_min: Option<u32>,
    /// Largest heart-beat interval sent or expected, ms [default: 3600000].
    #[arg(long, value_name = "MS")]
    pub heartbeat_max: Option<u32>,
    /// A connection silent for the interval times this is closed [default: 1.5].
    #[arg(long, value_name = "F")]
    pub heartbeat_grace: Option<f64>,
    /// Largest frame, bytes [default: 17825792].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_size: Option<usize>,
    /// Largest body, bytes [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_body_size: Option<usize>,
    /// Most headers per frame [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_headers: Option<usize>,
    /// Longest header line, bytes [default: 65536]; also the largest frame
    /// before login (the CONNECT).
    #[arg(long, value_name = "BYTES")]
    pub max_header_line: Option<usize>,
    /// Bytes queued for writing per connection [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub max_write_backlog: Option<usize>,
    /// Topic subscriber over its write backlog: disconnect or drop [default: disconnect].
    #[arg(long, value_name = "POLICY")]
    pub slow_consumer_policy: Option<SlowConsumerPolicy>,
    /// Milliseconds topic producers wait (paused) for a subscriber that is over
    /// half its write backlog, before the slow-consumer policy applies to it [default: 5000].
    #[arg(long, value_name = "MS")]
    pub slow_consumer_timeout: Option<u64>,
    /// Message bytes per queue before producers are paused [default: as --max-memory].
    #[arg(long, value_name = "BYTES")]
    pub max_queue_memory: Option<usize>,
    /// Message bytes in the broker before producers are paused [default: 40% of the machine's memory, or of its cgroup limit].
    #[arg(long, value_name = "BYTES")]
    pub max_memory: Option<usize>,
    /// Bytes of frames begun and not yet finished, in all connections; past
    /// it, connections in the middle of a frame are read one at a time
    /// [default: a quarter of --max-memory].
    #[arg(long, value_name = "BYTES")]
    pub max_input_memory: Option<usize>,
    /// Connections at once; more get an ERROR and are closed [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Users file with argon2 password hashes, groups and ACL rules; without
    /// it everyone is let in [default: none]. Make one with `passwd`.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Connections at once from one IP address [default: 20000].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Password checks waiting at once for one IP address (with --users);
    /// past it a CONNECT gets ERROR "too many logins" [default: 64].
    #[arg(long, value_name = "N")]
    pub max_pending_logins_per_ip: Option<usize>,
    /// Milliseconds a new connection has to send CONNECT [default: 10000].
    #[arg(long, value_name = "MS")]
    pub connect_timeout: Option<u64>,
    /// Milliseconds a connection may fall silent in the middle of a frame
    /// before it gets an ERROR and is closed; 0 is never [default: 30000].
    #[arg(long, value_name = "MS")]
    pub frame_timeout: Option<u64>,
    /// Subscriptions per connection [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_subscriptions: Option<usize>,
    /// Open transactions per connection [default: 100].
    #[arg(long, value_name = "N")]
    pub max_transactions: Option<usize>,
    /// Frames per second per connection; more is an ERROR and a close;
    /// 0 is no limit [default: 0].
    #[arg(long, value_name = "N")]
    pub max_frame_rate: Option<u32>,
    /// Where to accept STOMP over TLS (repeatable); printed as
    /// `listening on ADDR (tls)` [default: none].
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<String>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl BrokerArgs {
    /// The configuration: defaults, then the `--config` file, then flags.
    pub fn to_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if !self.listen.is_empty() {
            c.listen = self.listen.clone();
        }
        // Either flag replaces the file's choice of storage, whichever it was.
        if self.memory {
            c.memory = true;
            c.data_dir = None;
        }
        if let Some(d) = &self.data_dir {
            c.memory = false;
            c.data_dir = Some(d.clone());
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            persist,
            segment_size,
            fsync,
            group_window_us,
            log_level,
            queue_prefix,
            topic_prefix,
            prefetch,
            max_deliveries,
            dlq_prefix,
            heartbeat_min,
            heartbeat_max,
            heartbeat_grace,
            max_frame_size,
            max_body_size,
            max_headers,
            max_header_line,
            max_write_backlog,
            slow_consumer_policy,
            slow_consumer_timeout,
            max_memory,
            max_connections
        );
        if self.max_input_memory.is_some() {
            c.max_input_memory = self.max_input_memory;
        }
        if self.max_queue_memory.is_some() {
            c.max_queue_memory = self.max_queue_memory;
        }
        if let Some(u) = &self.users {
            c.users = Some(u.clone());
        }
        if !self.tls_listen.is_empty() {
            c.tls_listen = self.tls_listen.clone();
        }
        if let Some(p) = &self.tls_cert {
            c.tls_cert = Some(p.clone());
        }
        if let Some(p) = &self.tls_key {
            c.tls_key = Some(p.clone());
        }
        set!(
            max_connections_per_ip,
            max_pending_logins_per_ip,
            connect_timeout,
            frame_timeout,
            max_subscriptions,
            max_transactions,
            max_frame_rate
        );
        c.follow_queue_prefix();
        c.validate()?;
        Ok(c)
    }
}

/// Runs the broker until SIGINT or SIGTERM; prints `listening on ADDR` on
/// stdout for each listener. Exit codes: 0 after a clean stop, 2 for a bad
/// configuration, 1 when the broker cannot start or fails.
pub fn run(args: BrokerArgs) -> ExitCode {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stomp-broker: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    if config.connect_timeout < 100 {
        // `stomp send --connect-timeout` counts seconds; this one does not.
        tracing::warn!(
            "connect-timeout is {} ms: clients get that long to send CONNECT (the value is in milliseconds)",
            config.connect_timeout
        );
    }
    tracing::info!(
        "memory for messages: {} MiB in all, {} MiB per queue (--max-memory, --max-queue-memory); producers pause beyond; {} MiB for frames being received (--max-input-memory)",
        config.max_memory >> 20,
        config.queue_memory() >> 20,
        config.input_memory() >> 20
    );
    let mut config = config;
    fit_fd_limit(&mut config);
    let mut broker = match Broker::bind(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stomp-broker: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = install_signals(&mut broker) {
        eprintln!("stomp-broker: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    {
        let mut out = std::io::stdout().lock();
        for a in broker.local_addrs() {
            let _ = writeln!(out, "listening on {a}");
        }
        for a in broker.tls_addrs() {
            let _ = writeln!(out, "listening on {a} (tls)");
        }
        let _ = out.flush();
    }
    tracing::info!(addrs = ?broker.local_addrs(), "broker started");
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stomp-broker: event loop failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// File descriptors kept for what is not a client connection (listeners,
/// journal segments, the poller, the connection being refused).
const FD_RESERVE: u64 = 128;

/// Raises the soft open-file limit to the hard one, so 10,000 connections
/// fit, and lowers `max_connections` (and the per-IP limit) to what the
/// limit allows: past it, a client gets the "too many connections" ERROR
/// rather than a connection nobody accepts.
fn fit_fd_limit(config: &mut Config) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            return;
        }
    };
    tracing::debug!("open-file limit is {limit}");
    let fit = usize::try_from(limit.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if config.max_connections > fit {
        let why = format!(
            "max-connections lowered from {} to {fit}: the open-file limit is {limit} (raise it with `ulimit -n`)",
            config.max_connections
        );
        // Said out loud only when it was asked for.
        if config.max_connections == Config::default().max_connections {
            tracing::debug!("{why}");
        } else {
            tracing::info!("{why}");
        }
        config.max_connections = fit;
    }
    config.max_connections_per_ip = config.max_connections_per_ip.min(config.max_connections);
}

fn install_signals(broker: &mut Broker) -> std::io::Result<()> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write.try_clone()?)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, write)?;
    broker.stop_on_readable(read)?;
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, write)?;
    broker.reload_on_readable(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: BrokerArgs,
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("stomp-broker-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.toml");
        std::fs::write(&file, "prefetch = 5\nmax_deliveries = 3\n").unwrap();
        let cmd = Cmd::parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--prefetch",
            "9",
            "--listen",
            "127.0.0.1:0",
            "--slow-consumer-policy",
            "drop",
        ]);
        let c = cmd.args.to_config().unwrap();
        assert_eq!((c.prefetch, c.max_deliveries), (9, 3));
        assert_eq!(c.listen, ["127.0.0.1:0"]);
        assert_eq!(c.slow_consumer_policy, SlowConsumerPolicy::Drop);
        let bad = Cmd::parse_from(["x", "--heartbeat-grace", "0.2"]);
        assert!(
            bad.args
                .to_config()
                .unwrap_err()
                .to_string()
                .contains("heartbeat-grace")
        );
        // A storage flag replaces the file's storage, whichever it was.
        let stored = dir.join("stored.toml");
        std::fs::write(&stored, "data_dir = '/var/lib/x'\n").unwrap();
        let c = Cmd::parse_from(["x", "--config", stored.to_str().unwrap(), "--memory"])
            .args
            .to_config()
            .unwrap();
        assert!(c.memory && c.data_dir.is_none());
        // Both on the command line: refused, as in a config file.
        let both = Cmd::try_parse_from(["x", "--memory", "--data-dir", "/tmp/d"]).err();
        let both = both.map(|e| e.to_string()).unwrap_or_default();
        assert!(both.contains("cannot be used with"), "{both}");
        let in_memory = dir.join("memory.toml");
        std::fs::write(&in_memory, "memory = true\n").unwrap();
        let c = Cmd::parse_from([
            "x",
            "--config",
            in_memory.to_str().unwrap(),
            "--data-dir",
            "/tmp/d",
        ])
        .args
        .to_config()
        .unwrap();
        assert!(!c.memory);
        assert_eq!(c.data_dir.as_deref(), Some(std::path::Path::new("/tmp/d")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dead_letters_follow_a_changed_queue_prefix() {
        let c = Cmd::parse_from(["x", "--queue-prefix", "/q/"])
            .args
            .to_config()
            .unwrap();
        assert_eq!(c.dlq_prefix, "/q/DLQ.");
        let c = Cmd::parse_from(["x", "--queue-prefix", "/q/", "--dlq-prefix", "/q/dead."])
            .args
            .to_config()
            .unwrap();
        assert_eq!(c.dlq_prefix, "/q/dead.");
        let c = Cmd::parse_from(["x"]).args.to_config().unwrap();
        assert_eq!(c.dlq_prefix, "/queue/DLQ.");
    }
}
