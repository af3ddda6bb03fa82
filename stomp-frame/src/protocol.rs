//! Protocol rules both clients and servers need: versions, heart-beats, ack modes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A STOMP protocol version.
///
/// Ordered: `V1_0 < V1_1 < V1_2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Version {
    /// STOMP 1.0: no header escaping, LF line endings, no NACK.
    V1_0,
    /// STOMP 1.1: escaping of `\n`, `\c`, `\\`; heart-beats; NACK.
    V1_1,
    /// STOMP 1.2: also `\r` escaping and CRLF line endings; `ack` ids.
    #[default]
    V1_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` and `version` headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Picks the version for a session, as a server does on CONNECT.
    ///
    /// `accept_version` is the client's header: `None` (absent) means the
    /// client speaks 1.0 only. Unknown entries such as `3.14159` are
    /// ignored. Returns the highest version in both lists, or `None` when
    /// there is none (the server then sends an ERROR with a `version` header).
    ///
    /// ```
    /// use stomp_frame::Version;
    /// let ours = &Version::ALL;
    /// assert_eq!(Version::negotiate(Some("1.0,1.1,9.9"), ours), Some(Version::V1_1));
    /// assert_eq!(Version::negotiate(None, ours), Some(Version::V1_0));
    /// assert_eq!(Version::negotiate(Some("2.0"), ours), None);
    /// ```
    pub fn negotiate(accept_version: Option<&str>, supported: &[Version]) -> Option<Version> {
        match accept_version {
            None => supported.contains(&Version::V1_0).then_some(Version::V1_0),
            Some(list) => list
                .split(',')
                .filter_map(|v| v.trim().parse::<Version>().ok())
                .filter(|v| supported.contains(v))
                .max(),
        }
    }

    /// A comma-separated list of versions, as in `accept-version`.
    pub fn list(versions: &[Version]) -> String {
        versions
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a value of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {value:?} ({expected})")]
pub struct ParseValueError {
    /// What was being parsed (`version`, `heart-beat`, `ack mode`).
    pub what: &'static str,
    /// The text seen.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl FromStr for Version {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Version, ParseValueError> {
        match s {
            "1.0" => Ok(Version::V1_0),
            "1.1" => Ok(Version::V1_1),
            "1.2" => Ok(Version::V1_2),
            _ => Err(ParseValueError {
                what: "version",
                value: s.to_owned(),
                expected: "1.0, 1.1 or 1.2",
            }),
        }
    }
}

/// A `heart-beat` header: `sending,receiving`, both in milliseconds.
///
/// From the side that writes it: `send` is the smallest interval at which it
/// can send heart-beats (0: cannot), `receive` the interval at which it
/// would like to get them (0: does not want any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeartBeat {
    /// Milliseconds between the beats this side can send; 0 for none.
    pub send: u32,
    /// Milliseconds between the beats this side wants to receive; 0 for none.
    pub receive: u32,
}

/// The heart-beat intervals a session runs with, after negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeartBeatSchedule {
    /// Send something (a beat if nothing else) at least this often.
    pub send: Option<Duration>,
    /// Expect something from the peer at least this often (before any grace).
    pub receive: Option<Duration>,
}

impl HeartBeat {
    /// No heart-beats either way (`0,0`, also what a missing header means).
    pub const NONE: HeartBeat = HeartBeat {
        send: 0,
        receive: 0,
    };

    /// Makes a header value from the two intervals.
    pub const fn new(send: u32, receive: u32) -> HeartBeat {
        HeartBeat { send, receive }
    }

    /// Negotiates as the spec says, from our side.
    ///
    /// We send every `max(ours.send, theirs.receive)` ms unless either is 0,
    /// and expect the peer every `max(theirs.send, ours.receive)` ms unless
    /// either is 0.
    ///
    /// ```
    /// use stomp_frame::HeartBeat;
    /// use std::time::Duration;
    /// let client = HeartBeat::new(1000, 5000);
    /// let server = HeartBeat::new(2000, 500);
    /// let s = client.negotiate(server);
    /// assert_eq!(s.send, Some(Duration::from_millis(1000)));
    /// assert_eq!(s.receive, Some(Duration::from_millis(5000)));
    /// assert_eq!(HeartBeat::new(0, 5000).negotiate(server).send, None);
    /// ```
    pub fn negotiate(self, theirs: HeartBeat) -> HeartBeatSchedule {
        let interval =
            |a: u32, b: u32| (a != 0 && b != 0).then(|| Duration::from_millis(u64::from(a.max(b))));
        HeartBeatSchedule {
            send: interval(self.send, theirs.receive),
            receive: interval(theirs.send, self.receive),
        }
    }
}

impl fmt::Display for HeartBeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.send, self.receive)
    }
}

impl FromStr for HeartBeat {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<HeartBeat, ParseValueError> {
        let err = || ParseValueError {
            what: "heart-beat",
            value: s.to_owned(),
            expected: "two non-negative integers in milliseconds, as `10000,10000`",
        };
        let (a, b) = s.split_once(',').ok_or_else(err)?;
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            // Digits only: the one failure left is a value past u32, which
            // means "very rarely" and is taken as u32::MAX ms (49 days), as
            // RabbitMQ and ActiveMQ accept such values.
            Ok(t.parse::<u32>().unwrap_or(u32::MAX))
        };
        Ok(HeartBeat {
            send: num(a)?,
            receive: num(b)?,
        })
    }
}

/// How a subscription's messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum AckMode {
    /// The broker considers a message acknowledged once sent.
    #[default]
    Auto,
    /// ACK/NACK is cumulative: it covers every earlier unacknowledged
    /// message of the subscription too.
    Client,
    /// ACK/NACK covers one message only (defined by 1.1; RabbitMQ, ActiveMQ
    /// and stomp-broker accept it in 1.0 too).
    ClientIndividual,
}

impl AckMode {
    /// The mode as written in the `ack` header of SUBSCRIBE.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    /// Whether the client must acknowledge messages.
    pub const fn needs_ack(self) -> bool {
        !matches!(self, AckMode::Auto)
    }
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AckMode {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<AckMode, ParseValueError> {
        match s {
            "auto" => Ok(AckMode::Auto),
            "client" => Ok(AckMode::Client),
            "client-individual" => Ok(AckMode::ClientIndividual),
            _ => Err(ParseValueError {
                what: "ack mode",
                value: s.to_owned(),
                expected: "auto, client or client-individual",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_matrix() {
        let all = &Version::ALL;
        assert_eq!(Version::negotiate(None, all), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("1.0"), all), Some(Version::V1_0));
        assert_eq!(
            Version::negotiate(Some("1.0,1.1,1.2"), all),
            Some(Version::V1_2)
        );
        assert_eq!(
            Version::negotiate(Some("1.2,1.0"), all),
            Some(Version::V1_2)
        );
        assert_eq!(
            Version::negotiate(Some("1.1,3.14159"), all),
            Some(Version::V1_1)
        );
        assert_eq!(Version::negotiate(Some("3.14159"), all), None);
        assert_eq!(Version::negotiate(Some(""), all), None);
        let only12 = &[Version::V1_2];
        assert_eq!(Version::negotiate(None, only12), None);
        assert_eq!(Version::negotiate(Some("1.1"), only12), None);
        assert_eq!(Version::list(all), "1.0,1.1,1.2");
    }

    #[test]
    fn heart_beat_rules_with_zero_and_max() {
        let ms = |n| Some(Duration::from_millis(n));
        // (ours, theirs) -> (send, receive)
        let table = [
            ((0, 0), (0, 0), None, None),
            ((100, 0), (0, 100), ms(100), None),
            ((100, 200), (300, 50), ms(100), ms(300)),
            ((100, 200), (50, 400), ms(400), ms(200)),
            ((0, 200), (50, 400), None, ms(200)),
            ((100, 200), (0, 400), ms(400), None),
            ((100, 0), (50, 400), ms(400), None),
        ];
        for ((a, b), (c, d), send, receive) in table {
            let s = HeartBeat::new(a, b).negotiate(HeartBeat::new(c, d));
            assert_eq!((s.send, s.receive), (send, receive), "{a},{b} vs {c},{d}");
        }
    }

    #[test]
    fn heart_beat_parsing() {
        assert_eq!("0,0".parse(), Ok(HeartBeat::NONE));
        assert_eq!("10,20".parse(), Ok(HeartBeat::new(10, 20)));
        for bad in ["", "1", "1,", ",1", "-1,0", "1, 2", "a,b", "1,2,3"] {
            assert!(bad.parse::<HeartBeat>().is_err(), "{bad}");
        }
        assert_eq!(
            "99999999999,0".parse(),
            Ok(HeartBeat::new(u32::MAX, 0)),
            "saturates"
        );
        assert_eq!(HeartBeat::new(5, 6).to_string(), "5,6");
    }

    #[test]
    fn ack_modes() {
        for m in [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual] {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert!("Client".parse::<AckMode>().is_err());
        assert!(!AckMode::Auto.needs_ack());
        assert!(AckMode::Client.needs_ack());
    }
}
