//! The first bytes on an election connection: who is calling, and where it listens
//! (`QuorumCnxManager.startConnection` writes them, `handleConnection`/`InitialMessage.parse`
//! reads them).

use super::{incremental, Cur, Result, Stop, WireError, HANDSHAKE_ADDR_MAX};
use super::{PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2};
use crate::proto::jute::Writer;
use crate::quorum::Sid;

/// A `host:port` as ZooKeeper writes it (`NetUtils.formatInetAddr`: an IPv6 literal in brackets)
/// and reads it (`ConfigUtils.getHostAndPort`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    /// `host:port`, or `[v6]:port` when the host holds a ':'.
    pub fn format(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.port)
    }

    /// Parses exactly `host:port` / `[v6]:port`.
    pub fn parse(what: &'static str, s: &str) -> Result<HostPort> {
        let parts = host_and_port(what, s)?;
        match parts.as_slice() {
            [host, port] => Ok(HostPort { host: host.to_string(), port: parse_port(what, port)? }),
            _ => Err(text(what, "not host:port", s)),
        }
    }

    /// A literal wildcard address (`0.0.0.0`, `::`): ZooKeeper drops these from a handshake's
    /// addresses and calls back on the configured address instead. (ZooKeeper also resolves
    /// names to check this; a pure decoder only recognises literals.)
    pub fn is_wildcard(&self) -> bool {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_unspecified(),
            Err(_) => false,
        }
    }
}

/// `host` with brackets when it is an IPv6 literal (`QuorumServer.delimitedHostString`).
pub(crate) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

pub(crate) fn text(what: &'static str, reason: &'static str, s: &str) -> WireError {
    WireError::Text { what, reason, text: s.to_owned() }
}

pub(crate) fn parse_port(what: &'static str, s: &str) -> Result<u16> {
    // Java's Integer.parseInt accepts a leading '+'; a port is 0..=65535 (InetSocketAddress).
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(text(what, "port is not a number", s));
    }
    digits.parse::<u16>().map_err(|_| text(what, "port out of range 0..=65535", s))
}

/// `ConfigUtils.getHostAndPort`: `[v6]:a:b` → [v6, a, b]; otherwise split on ':'. Empty parts are
/// refused (ZooKeeper would fail later on them, or resolve an empty host).
pub(crate) fn host_and_port<'a>(what: &'static str, s: &'a str) -> Result<Vec<&'a str>> {
    let parts: Vec<&str> = if let Some(rest) = s.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(text(what, "'[' without ']'", s));
        };
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            vec![host]
        } else {
            let Some(ports) = after.strip_prefix(':') else {
                return Err(text(what, "no ':' after ']'", s));
            };
            std::iter::once(host).chain(ports.split(':')).collect()
        }
    } else {
        s.split(':').collect()
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(text(what, "empty host or port", s));
    }
    Ok(parts)
}

/// Which 3.5+ handshake form (`QuorumCnxManager.PROTOCOL_VERSION_V1/V2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeVersion {
    /// 3.5+: one election address (a 3.8 server sends this unless multiAddress is enabled).
    V1,
    /// 3.6+ with `multiAddress.enabled`: every election address, joined by '|'.
    V2,
}

/// What a connecting server says first on the election port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Before 3.5: the first long is the caller's sid and nothing else follows. A 3.8 server still
    /// accepts it (any non-negative first long). In either form, sid `i64::MAX`
    /// (`QuorumPeer.OBSERVER_ID`) is an observer without an id; the receiver numbers it.
    Legacy { sid: Sid },
    /// 3.5+: protocol version, sid and the caller's election address(es).
    Initial { version: HandshakeVersion, sid: Sid, addrs: Vec<HostPort> },
}

pub use HandshakeVersion::{V1, V2};

impl Handshake {
    pub fn sid(&self) -> Sid {
        match self {
            Handshake::Legacy { sid } | Handshake::Initial { sid, .. } => *sid,
        }
    }

    /// The bytes a connecting server writes. Errors if the addresses do not fit the 2,048 bytes a
    /// receiver accepts (or are none, which a receiver refuses as a zero length).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(64);
        match self {
            Handshake::Legacy { sid } => {
                if *sid < 0 {
                    return Err(WireError::Value { what: "legacy handshake sid", value: *sid });
                }
                w.i64(*sid);
            }
            Handshake::Initial { version, sid, addrs } => {
                let joined = addrs.iter().map(HostPort::format).collect::<Vec<_>>().join("|");
                if joined.is_empty() || joined.len() > HANDSHAKE_ADDR_MAX {
                    return Err(WireError::Length {
                        what: "handshake address",
                        len: joined.len() as i64,
                        min: 1,
                        max: HANDSHAKE_ADDR_MAX as i64,
                    });
                }
                w.i64(match version {
                    V1 => PROTOCOL_VERSION_V1,
                    V2 => PROTOCOL_VERSION_V2,
                });
                w.i64(*sid);
                w.buffer(joined.as_bytes());
            }
        }
        Ok(w.into_inner())
    }
}

/// Reads a handshake from the start of `buf`: Ok(None) until it is whole, then the handshake and
/// the bytes it took. A protocol version other than V1/V2, an address length outside 1..=2,048
/// (checked before the address is awaited) or a malformed address is an error.
pub fn decode_handshake(buf: &[u8]) -> Result<Option<(Handshake, usize)>> {
    let mut c = Cur::new(buf);
    incremental(read(&mut c).map(|h| (h, c.pos)))
}

fn read(c: &mut Cur<'_>) -> std::result::Result<Handshake, Stop> {
    let first = c.i64()?;
    if first >= 0 {
        return Ok(Handshake::Legacy { sid: first });
    }
    let version = match first {
        PROTOCOL_VERSION_V1 => V1,
        PROTOCOL_VERSION_V2 => V2,
        v => return Err(WireError::Value { what: "handshake protocol version", value: v }.into()),
    };
    let sid = c.i64()?;
    let n = c.len("handshake address", false, 1, HANDSHAKE_ADDR_MAX)?.unwrap_or(0);
    let raw = c.take(n)?;
    let s = std::str::from_utf8(raw)
        .map_err(|_| text("handshake address", "not UTF-8", &String::from_utf8_lossy(raw)))?;
    let addrs = s.split('|').map(|a| HostPort::parse("handshake address", a)).collect::<Result<Vec<_>>>()?;
    Ok(Handshake::Initial { version, sid, addrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn initial(version: HandshakeVersion, sid: Sid, addrs: &[(&str, u16)]) -> Handshake {
        Handshake::Initial { version, sid, addrs: addrs.iter().map(|(h, p)| HostPort::new(*h, *p)).collect() }
    }

    #[test]
    fn v1_bytes_are_version_sid_length_address() {
        let h = initial(V1, 3, &[("127.0.0.1", 3888)]);
        let b = h.encode().unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&(-65536i64).to_be_bytes());
        want.extend_from_slice(&3i64.to_be_bytes());
        want.extend_from_slice(&14i32.to_be_bytes());
        want.extend_from_slice(b"127.0.0.1:3888");
        assert_eq!(b, want);
        assert_eq!(decode_handshake(&b).unwrap(), Some((h, want.len())));
    }

    #[test]
    fn v2_joins_addresses_with_a_bar_and_brackets_v6() {
        let h = initial(V2, 7, &[("10.0.0.1", 1), ("::1", 2), ("zk-7.example", 65535)]);
        let b = h.encode().unwrap();
        assert!(b.ends_with(b"10.0.0.1:1|[::1]:2|zk-7.example:65535"));
        assert_eq!(&b[..8], &(-65535i64).to_be_bytes());
        assert_eq!(decode_handshake(&b).unwrap().unwrap().0, h);
    }

    #[test]
    fn legacy_form_is_the_sid_alone() {
        let b = 5i64.to_be_bytes();
        assert_eq!(decode_handshake(&b).unwrap(), Some((Handshake::Legacy { sid: 5 }, 8)));
        assert_eq!(Handshake::Legacy { sid: 5 }.encode().unwrap(), b.to_vec());
        // Bytes after it belong to the stream (the first election frame), not the handshake.
        let mut more = b.to_vec();
        more.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(decode_handshake(&more).unwrap().unwrap().1, 8);
    }

    #[test]
    fn unknown_protocol_version_is_an_error() {
        let mut b = (-65534i64).to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 12]);
        assert_eq!(
            decode_handshake(&b),
            Err(WireError::Value { what: "handshake protocol version", value: -65534 })
        );
    }

    #[test]
    fn address_length_is_bounded_before_the_address_arrives() {
        for bad in [0i32, -1, 2049, i32::MAX, i32::MIN] {
            let mut b = PROTOCOL_VERSION_V1.to_be_bytes().to_vec();
            b.extend_from_slice(&1i64.to_be_bytes());
            b.extend_from_slice(&bad.to_be_bytes());
            assert!(
                matches!(decode_handshake(&b), Err(WireError::Length { what: "handshake address", .. })),
                "{bad}"
            );
        }
        let ok = initial(V1, 1, &[(&"h".repeat(2046), 1)]).encode().unwrap();
        assert_eq!(i32::from_be_bytes(ok[16..20].try_into().unwrap()), 2048);
        assert!(decode_handshake(&ok).unwrap().is_some());
        assert!(initial(V1, 1, &[(&"h".repeat(2047), 1)]).encode().is_err());
        assert!(Handshake::Initial { version: V1, sid: 1, addrs: vec![] }.encode().is_err());
    }

    #[test]
    fn malformed_addresses_are_errors() {
        for a in [
            "host",
            "host:",
            ":1",
            "host:1:2",
            "host:x",
            "host:65536",
            "h:1|",
            "|h:1",
            "[::1",
            "[::1]x1",
            "h:-1",
        ] {
            let mut b = PROTOCOL_VERSION_V2.to_be_bytes().to_vec();
            b.extend_from_slice(&1i64.to_be_bytes());
            b.extend_from_slice(&(a.len() as i32).to_be_bytes());
            b.extend_from_slice(a.as_bytes());
            assert!(matches!(decode_handshake(&b), Err(WireError::Text { .. })), "{a}");
        }
    }

    #[test]
    fn wildcards_are_recognised() {
        assert!(HostPort::new("0.0.0.0", 1).is_wildcard());
        assert!(HostPort::new("::", 1).is_wildcard());
        assert!(!HostPort::new("127.0.0.1", 1).is_wildcard());
        assert!(!HostPort::new("zk1", 1).is_wildcard());
    }

    fn arb_host() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9.-]{1,30}", "[0-9a-f:]{2,20}".prop_filter("has a colon", |s| s.contains(':'))]
    }

    proptest! {
        #[test]
        fn round_trip_and_every_truncation_waits(
            v2 in any::<bool>(),
            sid in 0i64..i64::MAX,
            addrs in prop::collection::vec((arb_host(), any::<u16>()), 1..4),
        ) {
            let h = Handshake::Initial {
                version: if v2 { V2 } else { V1 },
                sid,
                addrs: addrs.into_iter().map(|(h, p)| HostPort { host: h, port: p }).collect(),
            };
            let b = h.encode().unwrap();
            prop_assert_eq!(decode_handshake(&b).unwrap(), Some((h, b.len())));
            for n in 0..b.len() {
                prop_assert_eq!(decode_handshake(&b[..n]).unwrap(), None);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_handshake(&b);
        }
    }
}
