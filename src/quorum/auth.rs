//! Quorum SASL (`quorum.auth.enableSasl=true`): DIGEST-MD5 between ensemble members, as Apache
//! ZooKeeper 3.8's `SaslQuorumAuthLearner` and `SaslQuorumAuthServer` run it. Pure state
//! machines: bytes in, bytes out; the drivers (election port, quorum port) do the I/O.
//!
//! Where it happens: the member that opens a connection authenticates right after connecting —
//! on the election port after its handshake (protocol version, sid, address), on the quorum
//! port before its first packet (FOLLOWERINFO/OBSERVERINFO). The member that accepts looks at
//! the next 8 bytes: the magic number starts an exchange; anything else is a member that does
//! not authenticate, refused with `quorum.auth.serverRequireSasl=true` and let through (bytes
//! untouched) without it.
//!
//! ```text
//! QuorumAuthPacket  magic i64 (0x5f2435013501edcc) | status i32 | token buffer (i32 length, -1: none)
//! status            0 IN_PROGRESS, 1 SUCCESS, -1 ERROR
//! learner → server  IN_PROGRESS, empty token (DIGEST-MD5 has no initial response)
//! server → learner  IN_PROGRESS, challenge
//! learner → server  IN_PROGRESS, digest-response
//! server → learner  SUCCESS, rspauth           (or ERROR, empty token: the learner gives up)
//! ```
//!
//! SASL names: protocol "zookeeper-quorum", server name and realm "zk-quorum-sasl-md5". A learner
//! with `quorum.auth.learnerRequireSasl=false` sends nothing (ZooKeeper: "Skipping SASL
//! authentication"). A server without `serverRequireSasl` keeps a connection whose exchange
//! failed (ZooKeeper: "Maintaining learner connection despite SASL authentication failure").

use crate::config::jaas::SaslUsers;
use crate::config::Secret;
use crate::request::sasl::{DigestMd5Client, DigestMd5Server, SaslStep};

/// ZooKeeper's `-0xa0dbcafecafe1234L`: Java negates the long whose bits are a0dbcafecafe1234,
/// which makes it positive, 0x5f2435013501edcc.
pub const MAGIC: i64 = (0xa0db_cafe_cafe_1234_u64 as i64).wrapping_neg();
pub const IN_PROGRESS: i32 = 0;
pub const SUCCESS: i32 = 1;
pub const ERROR: i32 = -1;
pub const PROTOCOL: &str = "zookeeper-quorum";
pub const SERVER_NAME: &str = "zk-quorum-sasl-md5";
/// Longest token accepted in a QuorumAuthPacket (a DIGEST-MD5 response is at most 4096 bytes).
pub const TOKEN_MAX: usize = 8192;
const HEADER: usize = 8 + 4 + 4;

/// What a member knows for quorum SASL: its JAAS sections, read once at start.
#[derive(Debug, Clone)]
pub struct QuorumSaslSettings {
    /// `quorum.auth.learnerRequireSasl`.
    pub learner_require: bool,
    /// `quorum.auth.serverRequireSasl`.
    pub server_require: bool,
    /// The `QuorumLearner` section's `username`/`password`.
    pub username: String,
    pub password: Secret,
    /// The `QuorumServer` section's `user_NAME` entries.
    pub users: SaslUsers,
}

/// One QuorumAuthPacket.
pub fn encode(status: i32, token: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + token.map_or(0, <[u8]>::len));
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    match token {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(t) => {
            out.extend_from_slice(&(t.len() as i32).to_be_bytes());
            out.extend_from_slice(t);
        }
    }
    out
}

/// A whole packet from the front of `buf`: `(status, token, bytes used)`; `Ok(None)` while
/// incomplete. The magic is not checked (ZooKeeper reads it without a check after the first).
pub fn decode(buf: &[u8]) -> Result<Option<(i32, Vec<u8>, usize)>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let status = i32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
    let len = i32::from_be_bytes(buf[12..16].try_into().expect("4 bytes"));
    if len < -1 || len as i64 > TOKEN_MAX as i64 {
        return Err(format!("a quorum auth token of {len} bytes (at most {TOKEN_MAX})"));
    }
    let len = len.max(0) as usize;
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    Ok(Some((status, buf[HEADER..HEADER + len].to_vec(), HEADER + len)))
}

fn status_name(s: i32) -> String {
    match s {
        IN_PROGRESS => "IN_PROGRESS".into(),
        SUCCESS => "SUCCESS".into(),
        ERROR => "ERROR".into(),
        other => format!("unknown status {other}"),
    }
}

/// What a driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAction {
    /// Read more bytes and step again with them.
    Read,
    /// Write these bytes, then step again (with no new bytes).
    Send(Vec<u8>),
    /// The exchange is over and the connection goes on: write `send` first; `leftover` are
    /// bytes read past the exchange, the start of the protocol that follows. `note` is the log
    /// line (who was authenticated, or why an unauthenticated member was let through).
    Done { send: Vec<u8>, leftover: Vec<u8>, authenticated: Option<String>, note: String },
    /// Close the connection after writing `send`; `why` is the log line.
    Fail { send: Vec<u8>, why: String },
}

#[derive(Debug)]
enum ServerState {
    /// Waiting for the first 8 bytes.
    Peek,
    Exchange(DigestMd5Server),
    Over,
}

/// The accepting side (`SaslQuorumAuthServer.authenticate`).
#[derive(Debug)]
pub struct AuthServer {
    require: bool,
    buf: Vec<u8>,
    state: ServerState,
    /// The DIGEST-MD5 server, until the magic number shows an exchange.
    pending: Option<DigestMd5Server>,
}

impl AuthServer {
    /// `nonce`: fresh random text for this connection.
    pub fn new(require: bool, nonce: String) -> AuthServer {
        AuthServer {
            require,
            buf: Vec::new(),
            state: ServerState::Peek,
            pending: Some(DigestMd5Server::with_names(nonce, PROTOCOL, SERVER_NAME)),
        }
    }

    /// Bytes read from the learner (empty: nothing new).
    pub fn step(&mut self, input: &[u8], users: &SaslUsers) -> AuthAction {
        if self.buf.len() + input.len() > HEADER + TOKEN_MAX {
            return self.fail_with_error("the learner sent more than one auth packet's bytes".into());
        }
        self.buf.extend_from_slice(input);
        match &mut self.state {
            ServerState::Over => {
                AuthAction::Fail { send: Vec::new(), why: "quorum auth already over".into() }
            }
            ServerState::Peek => {
                if self.buf.len() < 8 {
                    return AuthAction::Read;
                }
                if self.buf[..8] != MAGIC.to_be_bytes() {
                    self.state = ServerState::Over;
                    if self.require {
                        return AuthAction::Fail {
                            send: Vec::new(),
                            why: "the learner does not authenticate (no quorum SASL packet) and \
                                  quorum.auth.serverRequireSasl=true"
                                .into(),
                        };
                    }
                    return AuthAction::Done {
                        send: Vec::new(),
                        leftover: std::mem::take(&mut self.buf),
                        authenticated: None,
                        note: "the learner does not authenticate; let through: \
                               quorum.auth.serverRequireSasl=false"
                            .into(),
                    };
                }
                let Some(s) = self.pending.take() else {
                    return self.fail_with_error("no DIGEST-MD5 server".into());
                };
                self.state = ServerState::Exchange(s);
                self.step(&[], users)
            }
            ServerState::Exchange(server) => {
                let (token, used) = match decode(&self.buf) {
                    Ok(None) => return AuthAction::Read,
                    Ok(Some((_, t, used))) => (t, used),
                    Err(e) => return self.fail_with_error(e),
                };
                match server.step(&token, users) {
                    Ok(SaslStep::Challenge(c)) => {
                        self.buf.drain(..used);
                        AuthAction::Send(encode(IN_PROGRESS, Some(&c)))
                    }
                    Ok(SaslStep::Complete { token, authorization_id }) => {
                        self.buf.drain(..used);
                        self.state = ServerState::Over;
                        AuthAction::Done {
                            send: encode(SUCCESS, Some(&token)),
                            leftover: std::mem::take(&mut self.buf),
                            note: format!(
                                "authenticated the learner as {authorization_id} (quorum SASL DIGEST-MD5)"
                            ),
                            authenticated: Some(authorization_id),
                        }
                    }
                    Err(e) => self.fail_with_error(e.0),
                }
            }
        }
    }

    /// A failed exchange: ERROR to the learner; the connection closes unless not required.
    fn fail_with_error(&mut self, why: String) -> AuthAction {
        self.state = ServerState::Over;
        let send = encode(ERROR, Some(&[]));
        if self.require {
            AuthAction::Fail { send, why: format!("quorum SASL authentication of the learner failed: {why}") }
        } else {
            // The learner that failed gives up on its own; whatever it sent is not protocol.
            self.buf.clear();
            AuthAction::Done {
                send,
                leftover: Vec::new(),
                authenticated: None,
                note: format!(
                    "quorum SASL authentication of the learner failed ({why}); connection kept: \
                     quorum.auth.serverRequireSasl=false"
                ),
            }
        }
    }

    /// The deadline passed while waiting: a member that sends nothing is let through unless
    /// authentication is required.
    pub fn timed_out(&mut self) -> AuthAction {
        match self.state {
            ServerState::Peek if !self.require => {
                self.state = ServerState::Over;
                AuthAction::Done {
                    send: Vec::new(),
                    leftover: std::mem::take(&mut self.buf),
                    authenticated: None,
                    note: "the learner sent nothing yet; let through: quorum.auth.serverRequireSasl=false"
                        .into(),
                }
            }
            _ => {
                self.state = ServerState::Over;
                AuthAction::Fail {
                    send: Vec::new(),
                    why: "quorum SASL: the learner did not complete authentication in time".into(),
                }
            }
        }
    }
}

/// The connecting side (`SaslQuorumAuthLearner.authenticate`).
#[derive(Debug)]
pub struct AuthLearner {
    client: DigestMd5Client,
    buf: Vec<u8>,
    over: bool,
}

impl AuthLearner {
    /// None when `quorum.auth.learnerRequireSasl=false`: ZooKeeper's learner then skips the
    /// exchange altogether.
    pub fn new(s: &QuorumSaslSettings, cnonce: String) -> Option<AuthLearner> {
        if !s.learner_require {
            return None;
        }
        let client =
            DigestMd5Client::new(s.username.clone(), s.password.clone(), PROTOCOL, SERVER_NAME, cnonce);
        Some(AuthLearner { client, buf: Vec::new(), over: false })
    }

    /// The first packet: IN_PROGRESS with an empty token.
    pub fn start(&self) -> Vec<u8> {
        encode(IN_PROGRESS, Some(&[]))
    }

    /// Bytes read from the server (empty: nothing new).
    pub fn step(&mut self, input: &[u8]) -> AuthAction {
        if self.over {
            return AuthAction::Fail { send: Vec::new(), why: "quorum auth already over".into() };
        }
        if self.buf.len() + input.len() > HEADER + TOKEN_MAX + 64 * 1024 {
            return self.fail("the server sent more than one auth packet's bytes".into());
        }
        self.buf.extend_from_slice(input);
        let (status, token, used) = match decode(&self.buf) {
            Ok(None) => return AuthAction::Read,
            Ok(Some(p)) => p,
            Err(e) => return self.fail(e),
        };
        if self.buf[..8] != MAGIC.to_be_bytes() {
            return self.fail("the server's answer is not a quorum auth packet".into());
        }
        self.buf.drain(..used);
        match status {
            IN_PROGRESS => match self.client.step(&token) {
                Ok(Some(resp)) => AuthAction::Send(encode(IN_PROGRESS, Some(&resp))),
                Ok(None) => self.fail("the server went on after its rspauth".into()),
                Err(e) => self.fail(e.0),
            },
            SUCCESS => match self.client.step(&token) {
                Ok(None) if self.client.is_complete() => {
                    self.over = true;
                    AuthAction::Done {
                        send: Vec::new(),
                        leftover: std::mem::take(&mut self.buf),
                        authenticated: Some(String::new()),
                        note: "quorum SASL authentication completed (DIGEST-MD5)".into(),
                    }
                }
                Ok(_) => self.fail("protocol error: SUCCESS before the exchange completed".into()),
                Err(e) => self.fail(e.0),
            },
            other => self.fail(format!(
                "the server answered {}: authentication failed (wrong user name or password?)",
                status_name(other)
            )),
        }
    }

    fn fail(&mut self, why: String) -> AuthAction {
        self.over = true;
        AuthAction::Fail { send: Vec::new(), why: format!("quorum SASL authentication failed: {why}") }
    }
}

/// Runs one side's exchange over a connection, within `deadline`: the thin driver both quorum
/// ports share. Ok: the bytes read past the exchange and the log line; Err: why the connection
/// is to be closed.
pub mod drive {
    use std::time::Instant;

    use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{AuthAction, AuthLearner, AuthServer, QuorumSaslSettings};

    enum Side<'a> {
        Server(AuthServer, &'a QuorumSaslSettings),
        Learner(AuthLearner),
    }

    impl Side<'_> {
        fn step(&mut self, input: &[u8]) -> AuthAction {
            match self {
                Side::Server(m, s) => m.step(input, &s.users),
                Side::Learner(m) => m.step(input),
            }
        }
        fn timed_out(&mut self) -> AuthAction {
            match self {
                Side::Server(m, _) => m.timed_out(),
                Side::Learner(_) => AuthAction::Fail {
                    send: Vec::new(),
                    why: "quorum SASL: the server did not answer in time".into(),
                },
            }
        }
    }

    async fn within<T>(deadline: Instant, f: impl std::future::Future<Output = T>) -> Option<T> {
        let left = deadline.saturating_duration_since(Instant::now());
        futures_lite::future::or(async { Some(f.await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await
    }

    async fn send<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8], deadline: Instant) -> Result<(), String> {
        if b.is_empty() {
            return Ok(());
        }
        match within(deadline, async {
            s.write_all(b).await?;
            s.flush().await
        })
        .await
        {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!("quorum SASL: writing: {e}")),
            None => Err("quorum SASL: writing timed out".into()),
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        mut side: Side<'_>,
        mut input: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Vec<u8>, String), String> {
        let mut chunk = vec![0u8; 4096];
        loop {
            let mut act = side.step(&input);
            input.clear();
            if act == AuthAction::Read {
                match within(deadline, s.read(&mut chunk)).await {
                    Some(Ok(0)) => return Err("quorum SASL: the other member closed the connection".into()),
                    Some(Ok(n)) => {
                        input.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                    Some(Err(e)) => return Err(format!("quorum SASL: reading: {e}")),
                    None => act = side.timed_out(),
                }
            }
            match act {
                AuthAction::Read => {}
                AuthAction::Send(b) => send(s, &b, deadline).await?,
                AuthAction::Done { send: b, leftover, note, .. } => {
                    send(s, &b, deadline).await?;
                    return Ok((leftover, note));
                }
                AuthAction::Fail { send: b, why } => {
                    // Best effort: the learner learns of the failure; the reason is ours.
                    let _ = send(s, &b, deadline).await;
                    return Err(why);
                }
            }
        }
    }

    /// The accepting side; `read` are bytes already read after the handshake.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        settings: &QuorumSaslSettings,
        read: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Vec<u8>, String), String> {
        let m = AuthServer::new(settings.server_require, crate::request::sasl::nonce());
        run(s, Side::Server(m, settings), read, deadline).await
    }

    /// The connecting side; Ok(None): `learnerRequireSasl=false`, nothing was exchanged.
    pub async fn learn<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        settings: &QuorumSaslSettings,
        deadline: Instant,
    ) -> Result<Option<(Vec<u8>, String)>, String> {
        let Some(m) = AuthLearner::new(settings, crate::request::sasl::nonce()) else { return Ok(None) };
        send(s, &m.start(), deadline).await?;
        run(s, Side::Learner(m), Vec::new(), deadline).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pw: &str, learner_require: bool, server_require: bool) -> QuorumSaslSettings {
        QuorumSaslSettings {
            learner_require,
            server_require,
            username: "learner".into(),
            password: Secret::new(pw),
            users: SaslUsers { users: vec![("learner".into(), Secret::new("s3cret"))], ..Default::default() },
        }
    }

    /// Runs both machines against each other, each step fed in `chunk`-byte pieces; returns
    /// (server's end, learner's end).
    fn run(
        learner: &QuorumSaslSettings,
        server: &QuorumSaslSettings,
        chunk: usize,
    ) -> (AuthAction, AuthAction) {
        let mut srv = AuthServer::new(server.server_require, "nonce1".into());
        let mut l = AuthLearner::new(learner, "cnonce1".into()).unwrap();
        let mut to_server = l.start();
        let mut to_learner: Vec<u8> = Vec::new();
        let mut server_end = None;
        for _ in 0..20 {
            // Server side.
            while server_end.is_none() && !to_server.is_empty() {
                let n = chunk.min(to_server.len());
                let piece: Vec<u8> = to_server.drain(..n).collect();
                match srv.step(&piece, &server.users) {
                    AuthAction::Read => {}
                    AuthAction::Send(b) => to_learner.extend(b),
                    a @ AuthAction::Done { .. } | a @ AuthAction::Fail { .. } => {
                        if let AuthAction::Done { send, .. } | AuthAction::Fail { send, .. } = &a {
                            to_learner.extend(send.clone());
                        }
                        server_end = Some(a);
                    }
                }
            }
            while !to_learner.is_empty() {
                let n = chunk.min(to_learner.len());
                let piece: Vec<u8> = to_learner.drain(..n).collect();
                match l.step(&piece) {
                    AuthAction::Read => {}
                    AuthAction::Send(b) => to_server.extend(b),
                    a => return (server_end.unwrap_or(AuthAction::Read), a),
                }
            }
        }
        panic!("no end");
    }

    #[test]
    fn packet_bytes() {
        let p = encode(IN_PROGRESS, Some(b""));
        assert_eq!(p, [0x5f, 0x24, 0x35, 0x01, 0x35, 0x01, 0xed, 0xcc, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(MAGIC, 0x5f24_3501_3501_edcc);
        assert_eq!(decode(&p).unwrap(), Some((0, vec![], 16)));
        assert_eq!(decode(&p[..15]).unwrap(), None);
        assert_eq!(&encode(ERROR, None)[12..], &[0xff; 4]);
        let mut big = encode(SUCCESS, None);
        big[12..16].copy_from_slice(&((TOKEN_MAX + 1) as i32).to_be_bytes());
        assert!(decode(&big).is_err());
        big[12..16].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(decode(&big).is_err());
    }

    #[test]
    fn right_password_authenticates_in_any_chunking() {
        for chunk in [1, 3, 16, 4096] {
            let (s, l) = run(&settings("s3cret", true, true), &settings("x", true, true), chunk);
            assert!(matches!(&s, AuthAction::Done { authenticated: Some(u), .. } if u == "learner"), "{s:?}");
            assert!(matches!(l, AuthAction::Done { .. }), "{l:?}");
        }
    }

    #[test]
    fn wrong_password_fails_on_both_sides_without_showing_it() {
        let (s, l) = run(&settings("bad-pw-77", true, true), &settings("x", true, true), 4096);
        let AuthAction::Fail { why, .. } = &s else { panic!("{s:?}") };
        assert!(why.contains("Mismatched response"), "{why}");
        let AuthAction::Fail { why: lw, .. } = &l else { panic!("{l:?}") };
        assert!(lw.contains("ERROR"), "{lw}");
        assert!(!format!("{s:?}{l:?}").contains("bad-pw-77") && !format!("{s:?}").contains("s3cret"));
        // Not required: the server keeps the connection; the learner still gives up.
        let (s, l) = run(&settings("bad-pw-77", true, true), &settings("x", true, false), 4096);
        assert!(matches!(s, AuthAction::Done { authenticated: None, .. }), "{s:?}");
        assert!(matches!(l, AuthAction::Fail { .. }));
    }

    #[test]
    fn a_learner_that_does_not_authenticate() {
        let users = settings("x", true, true).users;
        // A FOLLOWERINFO's first bytes: type 11, then a zxid.
        let first = [0, 0, 0, 11, 0, 0, 0, 1, 0, 0];
        let mut s = AuthServer::new(true, "n".into());
        assert!(matches!(s.step(&first[..4], &users), AuthAction::Read));
        assert!(matches!(s.step(&first[4..], &users), AuthAction::Fail { .. }));
        let mut s = AuthServer::new(false, "n".into());
        match s.step(&first, &users) {
            AuthAction::Done { leftover, authenticated: None, .. } => assert_eq!(leftover, first),
            other => panic!("{other:?}"),
        }
        let mut s = AuthServer::new(false, "n".into());
        assert!(matches!(s.step(&first[..3], &users), AuthAction::Read));
        assert!(matches!(s.timed_out(), AuthAction::Done { ref leftover, .. } if leftover.len() == 3));
        let mut s = AuthServer::new(true, "n".into());
        assert!(matches!(s.timed_out(), AuthAction::Fail { .. }));
        assert!(AuthLearner::new(&settings("x", false, true), "c".into()).is_none());
    }

    #[test]
    fn garbage_after_the_magic_costs_the_connection() {
        let users = settings("x", true, true).users;
        let mut s = AuthServer::new(true, "n".into());
        let mut p = encode(IN_PROGRESS, None);
        p[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(s.step(&p, &users), AuthAction::Fail { .. }));
        let mut s = AuthServer::new(true, "n".into());
        assert!(matches!(s.step(&encode(IN_PROGRESS, Some(b"not empty")), &users), AuthAction::Fail { .. }));
        let mut l = AuthLearner::new(&settings("x", true, true), "c".into()).unwrap();
        assert!(matches!(l.step(&[0u8; 16]), AuthAction::Fail { .. }));
        let mut l = AuthLearner::new(&settings("x", true, true), "c".into()).unwrap();
        assert!(matches!(l.step(&encode(SUCCESS, Some(b"rspauth=00"))), AuthAction::Fail { .. }));
    }
}
