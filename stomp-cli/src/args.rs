//! The command line, as clap derive structs. `main.rs` parses [`Cli`] and
//! hands each subcommand's arguments to its module ([`crate::send`],
//! [`crate::subscribe`], [`crate::bench`], or the broker library).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// STOMP at the shell: send, subscribe, run a broker, benchmark one, add
/// users to a broker's users file.
#[derive(Debug, Parser)]
#[command(name = "stomp", version, about, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const MAIN_EXAMPLES: &str = "\
Examples:
  stomp broker                                  # a broker on 127.0.0.1:61613
  stomp subscribe /queue/hello                  # prints messages as they arrive
  stomp send /queue/hello 'hi'                  # in another terminal
  stomp bench --count 100000                    # how fast is the broker?
  stomp passwd users.toml alice                 # add a user (broker --users)
  STOMP_URL=stomp://guest:guest@127.0.0.1:61613/%2F stomp send /queue/a hi

send, subscribe and bench take the connection as --url (or STOMP_URL)
and/or --host, --port, --login, --passcode, --vhost.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a message (from an argument, a file or stdin), or one per line of stdin.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// Print the messages of one or more destinations as they arrive.
    #[command(after_help = SUBSCRIBE_EXAMPLES)]
    Subscribe(SubscribeArgs),
    /// Run the broker (same flags and config file as `stomp-broker`).
    #[command(after_help = BROKER_EXAMPLES)]
    Broker(Box<BrokerCmd>),
    /// Load-test any STOMP broker: throughput, latency, loss, idle connections.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(Box<BenchArgs>),
    /// Add a user to a broker users file, or change their password (argon2).
    #[command(after_help = PASSWD_EXAMPLES)]
    Passwd(stomp_broker::auth::PasswdArgs),
}

const PASSWD_EXAMPLES: &str = "\
Examples:
  stomp passwd users.toml alice                 # prompts twice, without echo
  echo \"$PW\" | stomp passwd users.toml alice    # reads it from stdin
  stomp broker --users users.toml               # only users of the file get in";

/// Where to connect and as whom; shared by `send`, `subscribe` and `bench`.
///
/// The URL (flag, then `STOMP_URL`, then `stomp://127.0.0.1:61613`) is read
/// first; the separate flags override its parts.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// Broker URL: `stomp://[user[:pass]@]host[:port][/vhost]`, or `stomp+ssl://...`
    /// for TLS (port 61614 by default). The path is the
    /// virtual host sent in the `host` header, percent-encoded (`/%2F` is `/`,
    /// RabbitMQ's default); without a path the host name is sent.
    #[arg(long, env = "STOMP_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Broker host (overrides the URL's).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Broker port (overrides the URL's) [default: 61613].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Login (overrides the URL's user).
    #[arg(long, value_name = "USER")]
    pub login: Option<String>,
    /// Passcode (overrides the URL's password).
    #[arg(long, value_name = "PASS")]
    pub passcode: Option<String>,
    /// Virtual host for the `host` header, as is (not percent-encoded).
    #[arg(long, value_name = "VHOST")]
    pub vhost: Option<String>,
    /// Protocol versions to offer: 1.0, 1.1, 1.2, or a list like 1.1,1.2 [default: all].
    #[arg(long, value_name = "VERSIONS")]
    pub stomp_version: Option<String>,
    /// Seconds to wait for the connection and for receipts.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds, allow_negative_numbers = true)]
    pub connect_timeout: f64,
    /// Speak TLS and trust only the CA certificates of this PEM file (a
    /// `stomp+ssl://` URL alone trusts the system's CAs).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Largest message body sent or received, bytes (the broker has its
    /// own limit: `stomp broker --max-body-size`) [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_body_size: Option<usize>,
}

const SEND_EXAMPLES: &str = "\
Examples:
  stomp send /queue/a 'hello'                      # body from the argument
  stomp send /queue/a -f order.json -H content-type:application/json
  echo hello | stomp send /topic/news              # body from stdin
  seq 1000 | stomp send --lines /queue/numbers     # one message per line
  stomp send --persistent --receipt /queue/a 'kept'

Exit status: 0 when the broker confirmed everything (a RECEIPT for --receipt,
--persistent and --lines; otherwise the receipt of the DISCONNECT, which
the broker sends after handling the SENDs); 1 when it did not or could not
be reached; 2 for a usage error.";

/// `stomp send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Where to send (`/queue/name`, `/topic/name`, ...).
    pub destination: String,
    /// The body. Without it (and without -f), the body is read from stdin.
    #[arg(conflicts_with = "file")]
    pub body: Option<String>,
    /// Read the body from FILE (`-` for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Send each line of the input (stdin, or -f FILE) as its own message,
    /// pipelined; confirmed by a receipt at the end, at each pause of the
    /// input and once a second.
    #[arg(long, conflicts_with = "body")]
    pub lines: bool,
    /// Add a header (repeatable): -H name:value.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Ask for a RECEIPT and fail unless it comes.
    #[arg(long)]
    pub receipt: bool,
    /// Mark the message persistent (`persistent:true`); implies --receipt.
    #[arg(long)]
    pub persistent: bool,
}

const SUBSCRIBE_EXAMPLES: &str = "\
Examples:
  stomp subscribe /queue/a                         # bodies, one per line
  stomp subscribe --headers /topic/news            # headers, blank line, body
  stomp subscribe --json /queue/a | jq .body       # one JSON object per message
  stomp subscribe --count 10 --timeout 5 /queue/a  # at most 10, at most 5 s
  stomp subscribe --ack auto /topic/ticks           # fastest; nothing waits for acks

--json prints {\"destination\":..,\"headers\":{..},\"body\":\"text\"}; a body
that is not UTF-8 is given as \"body_base64\" instead of \"body\".
Messages are acknowledged only after they were written out (--ack client,
the default, or client-individual): Ctrl-C, a lost connection or --count
leave unprinted messages to the broker, and --count N asks it for at most N
at a time (activemq.prefetchSize and prefetch-count, unless given with -H).
With --ack auto the broker forgets a message as it sends it, so what it sent
past --count, before Ctrl-C or before a failed subscription is gone.
Exit status: 0 after --count messages, Ctrl-C, or --timeout without --count;
3 when --timeout ran out before --count messages; 1 on connection errors;
130 when a second Ctrl-C cut the clean stop short.";

/// How `stomp subscribe` prints a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The body, then a newline.
    #[default]
    Body,
    /// Headers as `name:value` lines, a blank line, the body, a newline.
    Headers,
    /// One JSON object per line.
    Json,
}

/// Longest time a flag takes: 30 days.
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

/// A number of seconds: finite, not negative, at most [`MAX_SECONDS`].
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=MAX_SECONDS).contains(&v) => Ok(v),
        _ => Err(format!(
            "expects a number of seconds from 0 to {MAX_SECONDS} (30 days), got {s:?}"
        )),
    }
}

/// Messages per second: 0 (no limit), or from one a day to a billion.
fn rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v == 0.0 || (1.0 / 86_400.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!(
            "expects messages per second: 0 for no limit, or from 0.0000116 (one a day) to 1e9, got {s:?}"
        )),
    }
}

/// A body size in bytes, at most 1 GiB.
fn body_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v <= 1 << 30 => Ok(v),
        _ => Err(format!(
            "expects a number of bytes from 0 to 1073741824 (1 GiB), got {s:?}"
        )),
    }
}

/// The ack modes, as flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum AckArg {
    /// The broker forgets a message once sent.
    Auto,
    /// Cumulative ACK once handled (subscribe: printed).
    #[default]
    Client,
    /// One ACK per message once handled (subscribe: printed).
    ClientIndividual,
}

impl From<AckArg> for stomp_frame::AckMode {
    fn from(a: AckArg) -> stomp_frame::AckMode {
        match a {
            AckArg::Auto => stomp_frame::AckMode::Auto,
            AckArg::Client => stomp_frame::AckMode::Client,
            AckArg::ClientIndividual => stomp_frame::AckMode::ClientIndividual,
        }
    }
}

/// `stomp subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// One or more destinations.
    #[arg(required = true)]
    pub destinations: Vec<String>,
    /// Print the headers before each body.
    #[arg(long, conflicts_with = "json")]
    pub headers: bool,
    /// Print one JSON object per message.
    #[arg(long)]
    pub json: bool,
    /// Ack mode; client modes ack after printing.
    #[arg(long, value_enum, default_value_t = AckArg::Client)]
    pub ack: AckArg,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECONDS.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    /// Add a header to each SUBSCRIBE (repeatable): -H name:value.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    pub sub_headers: Vec<String>,
}

impl SubscribeArgs {
    /// The output format chosen by the flags.
    pub fn format(&self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else if self.headers {
            OutputFormat::Headers
        } else {
            OutputFormat::Body
        }
    }
}

const BROKER_EXAMPLES: &str = "\
Examples:
  stomp broker                                     # 127.0.0.1:61613, queues kept in ./data
  stomp broker --listen 0.0.0.0:61613 --prefetch 100
  stomp broker --config broker.toml                # keys = flag names with _
  stomp broker --listen 127.0.0.1:0 --memory       # any free port, nothing on disk

Prints `listening on ADDR` on stdout per listener; logs go to stderr.";

/// `stomp broker`: the flags of `stomp-broker`.
#[derive(Debug, Clone, Args)]
pub struct BrokerCmd {
    /// The broker's flags.
    #[command(flatten)]
    pub args: stomp_broker::cli::BrokerArgs,
}

const BENCH_EXAMPLES: &str = "\
Examples:
  stomp bench                                      # 128b_1a_1queue_1, 100,000 messages
  stomp bench --topic --consumers 8 --duration 10  # fan-out to 8 subscribers
  stomp bench --rate 1000 --duration 10            # latency at a fixed rate
  stomp bench --persistent --count 20000           # persistent, with receipts
  stomp bench --url stomp://guest:guest@127.0.0.1:61713/%2F --json
  stomp bench --idle-connections 10000 --hold 30 --broker-pid $(pidof stomp)
  stomp bench --tcp-echo --rate 1000 --duration 5  # loopback TCP round trip

Scenario names follow the classic STOMP benchmark: 128b_1a_1queue_1 is a
128-byte body, 1 async producer, 1 queue, 1 consumer; `p` instead of `a`
means persistent with receipts, `r` receipts without persistence.
Latency is the consumer's receive time minus the send time carried in a
header (same process, monotonic clock); loss and duplicates come from
per-producer sequence numbers. Ctrl-C stops the producers and reports what
was measured until then (\"interrupted\": true in --json); a second Ctrl-C
quits at once.";

/// `stomp bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Producer connections.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub producers: u32,
    /// Consumer connections.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consumers: u32,
    /// Body size in bytes (at most 1 GiB).
    #[arg(long, default_value_t = 128, value_name = "BYTES", value_parser = body_size)]
    pub size: usize,
    /// Messages to send in all (split among producers) [default: 100000 unless --duration].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Send for SECONDS instead of a count.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Messages per second in all (split among producers); 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0, value_name = "MSGS", value_parser = rate, allow_negative_numbers = true)]
    pub rate: f64,
    /// Use a topic (fan-out to every consumer) instead of a queue.
    #[arg(long)]
    pub topic: bool,
    /// Destination name (default: `/queue/bench-<pid>-<time>`, or `/topic/...` with --topic).
    /// Messages already on it are consumed, and reported but not counted.
    #[arg(long, value_name = "DEST")]
    pub destination: Option<String>,
    /// Ask for a receipt on every SEND (at most --window unconfirmed).
    #[arg(long)]
    pub receipts: bool,
    /// Send with `persistent:true` and receipts.
    #[arg(long)]
    pub persistent: bool,
    /// Unconfirmed SENDs per producer with receipts.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub window: usize,
    /// Consumers' ack mode.
    #[arg(long, value_enum, default_value_t = AckArg::Auto)]
    pub ack: AckArg,
    /// Seconds to wait for the last messages after the producers finish.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub drain_timeout: f64,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub json: bool,
    /// Label for the output (e.g. the broker's name).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Idle mode: open N connections with heart-beats, time the handshakes,
    /// then hold them for --hold seconds.
    #[arg(long, value_name = "N")]
    pub idle_connections: Option<usize>,
    /// Idle mode: seconds to hold the connections.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub hold: f64,
    /// Idle mode: heart-beat header sent in each CONNECT.
    #[arg(long, default_value = "10000,10000", value_name = "SX,SY")]
    pub heart_beat: String,
    /// Idle mode: handshakes in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub concurrency: usize,
    /// Idle mode: PID of the broker, to report its VmRSS before and while
    /// holding (Linux /proc).
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Measure a plain loopback TCP round trip instead (an echo server in a
    /// child process; --size bytes at --rate, default 1000, for --duration
    /// or --count): the floor for producer -> broker -> consumer latency.
    #[arg(long)]
    pub tcp_echo: bool,
    /// The echo server process of --tcp-echo (internal).
    #[arg(long, hide = true)]
    pub echo_server: bool,
}
