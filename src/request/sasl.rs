//! SASL DIGEST-MD5 on the server side (RFC 2831), as ZooKeeper's server runs it through Java's
//! `SaslServer` for the SASL request (opcode 102): protocol "zookeeper", server name and realm
//! "zk-sasl-md5", qop "auth" only (no integrity or confidentiality layer), users and passwords
//! from the JAAS `Server` section (`SaslServerCallbackHandler`). Pure: tokens in, tokens out; the
//! nonce is handed in by the caller.
//!
//! The exchange: the client's first token is empty and the server answers with a challenge;
//! the client's digest-response is checked and answered with `rspauth`, which completes the
//! authentication with the authorization id ZooKeeper would give (the user name, after the
//! Kerberos-name rules of `SaslServerCallbackHandler`). Any failure is a `SaslError`, which
//! ZooKeeper answers with AuthFailed (or SessionClosedRequireSaslAuth) and a closed connection.

use md5::{Digest, Md5};

pub use crate::config::jaas::SaslUsers;
use crate::config::Secret;

/// The protocol and server name ZooKeeper creates its DIGEST-MD5 server with; the server name is
/// also its only realm.
pub const PROTOCOL: &str = "zookeeper";
pub const SERVER_NAME: &str = "zk-sasl-md5";

/// Longest digest-response accepted (RFC 2831 §2.1.2 limits it to 4096 bytes).
pub const MAX_RESPONSE_BYTES: usize = 4096;

impl SaslUsers {
    /// `SaslServerCallbackHandler.handlePasswordCallback`.
    fn password(&self, user: &str) -> Option<&Secret> {
        if user == "super" {
            if let Some(p) = &self.super_password {
                return Some(p);
            }
        }
        self.users.iter().find(|(u, _)| u == user).map(|(_, p)| p)
    }

    /// `handleAuthorizeCallback`: the authorization id is the authenticated user's Kerberos short
    /// name, with "/host" and "@realm" kept unless the properties remove them.
    pub fn authorization_id(&self, user: &str) -> String {
        let (principal, realm) = match user.split_once('@') {
            Some((p, r)) => (p, Some(r)),
            None => (user, None),
        };
        let (name, host) = match principal.split_once('/') {
            Some((n, h)) if realm.is_some() => (n, Some(h)),
            _ => (principal, None),
        };
        let mut id = name.to_owned();
        if let (Some(h), false) = (host, self.remove_host) {
            id.push('/');
            id.push_str(h);
        }
        if let (Some(r), false) = (realm, self.remove_realm) {
            id.push('@');
            id.push_str(r);
        }
        id
    }
}

/// A failed authentication, with Java's reason (it goes to the log; it never holds a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DIGEST-MD5: {0}")]
pub struct SaslError(pub String);

/// What one step answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this token; the exchange goes on.
    Challenge(Vec<u8>),
    /// Send this token (`rspauth=...`); the client is authenticated as `authorization_id`.
    Complete { token: Vec<u8>, authorization_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    Challenged,
    Done,
}

/// One connection's DIGEST-MD5 server.
#[derive(Debug, Clone)]
pub struct DigestMd5Server {
    nonce: String,
    state: State,
    /// The SASL protocol and server name (also the only realm) this server was created with.
    protocol: &'static str,
    server_name: &'static str,
}

impl DigestMd5Server {
    /// `nonce`: fresh random text (no quotes, commas or backslashes) for this connection.
    pub fn new(nonce: String) -> DigestMd5Server {
        DigestMd5Server::with_names(nonce, PROTOCOL, SERVER_NAME)
    }

    /// A server for another protocol and server name (the quorum's: "zookeeper-quorum",
    /// "zk-quorum-sasl-md5").
    pub fn with_names(nonce: String, protocol: &'static str, server_name: &'static str) -> DigestMd5Server {
        assert!(!nonce.is_empty() && !nonce.contains(['"', ',', '\\']), "nonce must be a plain token");
        DigestMd5Server { nonce, state: State::Start, protocol, server_name }
    }

    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// One token from the client.
    pub fn step(&mut self, token: &[u8], users: &SaslUsers) -> Result<SaslStep, SaslError> {
        match self.state {
            State::Start => {
                if !token.is_empty() {
                    return Err(SaslError("must not have an initial response".into()));
                }
                self.state = State::Challenged;
                Ok(SaslStep::Challenge(self.challenge().into_bytes()))
            }
            State::Challenged => {
                // One try per connection, as Java's server: whatever happens, it is over.
                self.state = State::Done;
                self.check_response(token, users)
            }
            State::Done => Err(SaslError("authentication already completed".into())),
        }
    }

    fn challenge(&self) -> String {
        format!(
            "realm=\"{}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
            self.server_name, self.nonce
        )
    }

    fn check_response(&self, token: &[u8], users: &SaslUsers) -> Result<SaslStep, SaslError> {
        let fail = |why: &str| Err(SaslError(why.to_owned()));
        if token.len() > MAX_RESPONSE_BYTES {
            return fail("digest response too long");
        }
        let text =
            std::str::from_utf8(token).map_err(|_| SaslError("digest response is not UTF-8".into()))?;
        let d = parse_directives(text).map_err(SaslError)?;
        let get = |k: &str| d.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let Some(user) = get("username") else {
            return fail("digest response format violation. Missing username.");
        };
        let realm = get("realm").unwrap_or("");
        if !realm.is_empty() && realm != self.server_name {
            return Err(SaslError(format!("digest response format violation. Nonexistent realm: {realm}")));
        }
        if get("nonce") != Some(self.nonce.as_str()) {
            return fail("digest response format violation. Mismatched nonce.");
        }
        let Some(cnonce) = get("cnonce") else {
            return fail("digest response format violation. Missing cnonce.");
        };
        let nc = get("nc").unwrap_or("");
        if u32::from_str_radix(nc, 16) != Ok(1) {
            return Err(SaslError(format!(
                "digest response format violation. Nonce count does not match: {nc}"
            )));
        }
        let qop = get("qop").unwrap_or("auth");
        if qop != "auth" {
            return Err(SaslError(format!("digest response format violation. Invalid QOP: {qop}")));
        }
        let Some(uri) = get("digest-uri") else {
            return fail("digest response format violation. Missing digest-uri.");
        };
        // serv-type "/" host [ "/" serv-name ]: this service, this server name.
        let mut parts = uri.splitn(3, '/');
        let (serv, host) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !serv.eq_ignore_ascii_case(self.protocol) || !host.eq_ignore_ascii_case(self.server_name) {
            return Err(SaslError(format!("digest response format violation. Mismatched URI: {uri}")));
        }
        let Some(response) = get("response") else {
            return fail("digest response format violation. Missing response.");
        };
        let authzid = get("authzid").filter(|a| !a.is_empty());
        let utf8 = get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8"));
        let Some(password) = users.password(user) else {
            return Err(SaslError(format!("cannot acquire password for {user} in realm : {realm}")));
        };
        let ha1 = {
            let mut inner = Md5::new();
            inner.update(credential_bytes(user, utf8));
            inner.update(b":");
            inner.update(credential_bytes(realm, utf8));
            inner.update(b":");
            inner.update(credential_bytes(password.expose(), utf8));
            let mut a1 = Md5::new();
            a1.update(inner.finalize());
            a1.update(format!(":{}:{cnonce}", self.nonce));
            if let Some(a) = authzid {
                a1.update(b":");
                a1.update(a.as_bytes());
            }
            hex(&a1.finalize())
        };
        let kd = |a2: &str| {
            let ha2 = hex(&Md5::digest(a2.as_bytes()));
            hex(&Md5::digest(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce).as_bytes()))
        };
        let expected = kd(&format!("AUTHENTICATE:{uri}"));
        if !eq_ignore_case_ct(expected.as_bytes(), response.as_bytes()) {
            return fail("digest response format violation. Mismatched response.");
        }
        let rspauth = kd(&format!(":{uri}"));
        Ok(SaslStep::Complete {
            token: format!("rspauth={rspauth}").into_bytes(),
            authorization_id: users.authorization_id(user),
        })
    }
}

/// A fresh DIGEST-MD5 nonce (or cnonce): 32 random bytes in base64 (no quotes or commas), as
/// Java's SASL makes them.
pub fn nonce() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Longest challenge accepted (RFC 2831 §2.1.1 limits it to 2048 bytes).
pub const MAX_CHALLENGE_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientState {
    /// Waiting for the server's challenge.
    Start,
    /// Our digest-response is out; `rspauth` is what the server must answer.
    Responded {
        rspauth: String,
    },
    Done,
}

/// The client side of DIGEST-MD5 (RFC 2831), as Java's `Sasl.createSaslClient` runs it for a
/// ZooKeeper member that joins as a learner: no initial response, authorization id = user name,
/// qop "auth", digest-uri "protocol/server name". Pure: tokens in, tokens out; the cnonce is
/// handed in.
#[derive(Debug, Clone)]
pub struct DigestMd5Client {
    user: String,
    password: Secret,
    protocol: &'static str,
    server_name: &'static str,
    cnonce: String,
    state: ClientState,
}

impl DigestMd5Client {
    pub fn new(
        user: String,
        password: Secret,
        protocol: &'static str,
        server_name: &'static str,
        cnonce: String,
    ) -> DigestMd5Client {
        assert!(!cnonce.is_empty() && !cnonce.contains(['"', ',', '\\']), "cnonce must be a plain token");
        DigestMd5Client { user, password, protocol, server_name, cnonce, state: ClientState::Start }
    }

    pub fn is_complete(&self) -> bool {
        self.state == ClientState::Done
    }

    /// One token from the server: the challenge (answered with the digest-response) or the
    /// `rspauth` that proves the server knew the password too (answered with nothing).
    pub fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::Start => {
                let (resp, rspauth) = self.respond(token)?;
                self.state = ClientState::Responded { rspauth };
                Ok(Some(resp.into_bytes()))
            }
            ClientState::Responded { rspauth } => {
                let text = std::str::from_utf8(token)
                    .map_err(|_| SaslError("the server's rspauth is not UTF-8".into()))?;
                let d = parse_directives(text).map_err(SaslError)?;
                let got = d.iter().find(|(n, _)| n.eq_ignore_ascii_case("rspauth")).map(|(_, v)| v);
                match got {
                    Some(v) if eq_ignore_case_ct(v.as_bytes(), rspauth.as_bytes()) => Ok(None),
                    Some(_) => Err(SaslError(
                        "the server's rspauth does not match: it does not know our password".into(),
                    )),
                    None => Err(SaslError("the server's last token has no rspauth".into())),
                }
            }
            ClientState::Done => Err(SaslError("authentication already completed".into())),
        }
    }

    /// The digest-response to `challenge`, and the rspauth the server must then send.
    fn respond(&self, challenge: &[u8]) -> Result<(String, String), SaslError> {
        if challenge.is_empty() {
            return Err(SaslError("the server sent an empty challenge".into()));
        }
        if challenge.len() > MAX_CHALLENGE_BYTES {
            return Err(SaslError("the server's challenge is too long".into()));
        }
        let text =
            std::str::from_utf8(challenge).map_err(|_| SaslError("the challenge is not UTF-8".into()))?;
        let d = parse_directives(text).map_err(SaslError)?;
        let get = |k: &str| d.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let Some(nonce) = get("nonce") else {
            return Err(SaslError("the challenge has no nonce".into()));
        };
        if !get("algorithm").is_some_and(|a| a.eq_ignore_ascii_case("md5-sess")) {
            return Err(SaslError("the challenge does not offer algorithm=md5-sess".into()));
        }
        let qops = get("qop").unwrap_or("auth");
        if !qops.split(',').any(|q| q.trim() == "auth") {
            return Err(SaslError(format!("the challenge offers no qop=auth (only {qops})")));
        }
        let realm = get("realm").unwrap_or("");
        let utf8 = get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8"));
        let uri = format!("{}/{}", self.protocol, self.server_name);
        let nc = "00000001";
        let cnonce = &self.cnonce;
        let ha1 = {
            let mut inner = Md5::new();
            inner.update(credential_bytes(&self.user, utf8));
            inner.update(b":");
            inner.update(credential_bytes(realm, utf8));
            inner.update(b":");
            inner.update(credential_bytes(self.password.expose(), utf8));
            let mut a1 = Md5::new();
            a1.update(inner.finalize());
            a1.update(format!(":{nonce}:{cnonce}:"));
            a1.update(self.user.as_bytes());
            hex(&a1.finalize())
        };
        let kd = |a2: &str| {
            let ha2 = hex(&Md5::digest(a2.as_bytes()));
            hex(&Md5::digest(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()))
        };
        let response = kd(&format!("AUTHENTICATE:{uri}"));
        let rspauth = kd(&format!(":{uri}"));
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        if utf8 {
            out.push_str("charset=utf-8,");
        }
        out.push_str(&format!("username=\"{}\",", q(&self.user)));
        if !realm.is_empty() {
            out.push_str(&format!("realm=\"{}\",", q(realm)));
        }
        out.push_str(&format!(
            "nonce=\"{}\",nc={nc},cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={response},qop=auth,authzid=\"{}\"",
            q(nonce),
            q(&self.user)
        ));
        Ok((out, rspauth))
    }
}

/// RFC 2831 §2.1.2.1: with charset=utf-8, user name, realm and password are hashed as ISO 8859-1
/// when every character fits in it, as UTF-8 otherwise.
fn credential_bytes(s: &str, utf8: bool) -> Vec<u8> {
    if utf8 && !s.chars().all(|c| (c as u32) < 0x100) {
        return s.as_bytes().to_vec();
    }
    s.chars().map(|c| c as u32 as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two hex digests without stopping at the first difference.
fn eq_ignore_case_ct(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())) == 0
}

/// `name=value` or `name="quoted \" value"`, separated by commas. A directive given twice is
/// an error, as in RFC 2831.
fn parse_directives(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq =
            rest.find('=').ok_or_else(|| format!("digest response format violation: no '=' in {rest:?}"))?;
        let name = rest[..eq].trim().to_owned();
        if name.is_empty() || name.contains([',', '"']) {
            return Err("digest response format violation: bad directive name".into());
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or("digest response format violation: unclosed quote")?;
            value = v;
            rest = q[end..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(format!("digest response format violation: {name} given twice"));
        }
        out.push((name, value));
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err("digest response format violation: expected ','".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> SaslUsers {
        SaslUsers { users: vec![("bob".into(), Secret::new("bobsecret"))], ..Default::default() }
    }

    /// A client's digest-response, computed independently of the server code above (the
    /// formulas of RFC 2831 §2.1.2.1 written out again).
    fn client_response(user: &str, pw: &str, nonce: &str, cnonce: &str, uri: &str) -> String {
        let h = |s: &[u8]| Md5::digest(s).to_vec();
        let hx = |s: &[u8]| hex(&h(s));
        let mut a1 = h(format!("{user}:{SERVER_NAME}:{pw}").as_bytes());
        a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
        let resp = hx(format!(
            "{}:{nonce}:00000001:{cnonce}:auth:{}",
            hx(&a1),
            hx(format!("AUTHENTICATE:{uri}").as_bytes())
        )
        .as_bytes());
        format!(
            "charset=utf-8,username=\"{user}\",realm=\"{SERVER_NAME}\",nonce=\"{nonce}\",nc=00000001,\
             cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={resp},qop=auth"
        )
    }

    #[test]
    fn rfc2831_exchange() {
        let mut s = DigestMd5Server::new("OA6MG9tEQGm2hh".into());
        let SaslStep::Challenge(c) = s.step(b"", &users()).unwrap() else { panic!() };
        assert_eq!(
            String::from_utf8(c).unwrap(),
            "realm=\"zk-sasl-md5\",nonce=\"OA6MG9tEQGm2hh\",qop=\"auth\",charset=utf-8,algorithm=md5-sess"
        );
        let r =
            client_response("bob", "bobsecret", "OA6MG9tEQGm2hh", "OA6MHXh6VqTrRk", "zookeeper/zk-sasl-md5");
        match s.step(r.as_bytes(), &users()).unwrap() {
            SaslStep::Complete { token, authorization_id } => {
                assert_eq!(authorization_id, "bob");
                assert!(token.starts_with(b"rspauth=") && token.len() == 8 + 32);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.is_complete());
        assert!(s.step(b"", &users()).is_err());
    }

    #[test]
    fn rfc2831_example_response() {
        // RFC 2831 §4: chris / secret on elwood.innosoft.com, protocol imap (the digest is
        // the RFC's, so the arithmetic is checked against a published value).
        let ha1 = {
            let mut a1 = Md5::digest(b"chris:elwood.innosoft.com:secret").to_vec();
            a1.extend_from_slice(b":OA6MG9tEQGm2hh:OA6MHXh6VqTrRk");
            hex(&Md5::digest(&a1))
        };
        let ha2 = hex(&Md5::digest(b"AUTHENTICATE:imap/elwood.innosoft.com"));
        let resp =
            hex(&Md5::digest(format!("{ha1}:OA6MG9tEQGm2hh:00000001:OA6MHXh6VqTrRk:auth:{ha2}").as_bytes()));
        assert_eq!(resp, "d388dad90d4bbd760a152321f2143af7");
    }

    #[test]
    fn failures() {
        let nonce = "n1";
        let run = |resp: String| {
            let mut s = DigestMd5Server::new(nonce.into());
            s.step(b"", &users()).unwrap();
            s.step(resp.as_bytes(), &users())
        };
        let ok = |u: &str, p: &str| client_response(u, p, nonce, "c", "zookeeper/zk-sasl-md5");
        assert!(run(ok("bob", "bobsecret")).is_ok());
        assert_eq!(
            run(ok("bob", "wrong")).unwrap_err().0,
            "digest response format violation. Mismatched response."
        );
        assert!(run(ok("eve", "x")).unwrap_err().0.starts_with("cannot acquire password for eve"));
        assert!(run(client_response("bob", "bobsecret", "other", "c", "zookeeper/zk-sasl-md5")).is_err());
        assert!(run(client_response("bob", "bobsecret", nonce, "c", "http/zk-sasl-md5"))
            .unwrap_err()
            .0
            .contains("Mismatched URI"));
        assert!(run("garbage".into()).is_err());
        assert!(run("username=\"bob".into()).is_err());
        assert!(run("a=1,a=2".into()).is_err());
        let mut s = DigestMd5Server::new(nonce.into());
        assert!(s.step(b"x", &users()).is_err(), "no initial response");
        // The password never shows in an error.
        assert!(!format!("{:?}", run(ok("bob", "wrong"))).contains("bobsecret"));
    }

    #[test]
    fn super_password_and_kerberos_names() {
        let mut u = users();
        u.super_password = Some(Secret::new("sup"));
        let mut s = DigestMd5Server::new("n".into());
        s.step(b"", &u).unwrap();
        let r = client_response("super", "sup", "n", "c", "zookeeper/zk-sasl-md5");
        assert!(
            matches!(s.step(r.as_bytes(), &u), Ok(SaslStep::Complete { authorization_id, .. }) if authorization_id == "super")
        );
        assert_eq!(u.authorization_id("zk/host@REALM"), "zk/host@REALM");
        u.remove_host = true;
        u.remove_realm = true;
        assert_eq!(u.authorization_id("zk/host@REALM"), "zk");
        assert_eq!(u.authorization_id("a/b"), "a/b", "no realm: not a service principal");
    }

    #[test]
    fn client_and_server_agree_with_other_names() {
        let mut s = DigestMd5Server::with_names("n9".into(), "zookeeper-quorum", "zk-quorum-sasl-md5");
        let mut c = DigestMd5Client::new(
            "bob".into(),
            Secret::new("bobsecret"),
            "zookeeper-quorum",
            "zk-quorum-sasl-md5",
            "c9".into(),
        );
        let SaslStep::Challenge(ch) = s.step(b"", &users()).unwrap() else { panic!() };
        assert!(String::from_utf8_lossy(&ch).contains("realm=\"zk-quorum-sasl-md5\""));
        let resp = c.step(&ch).unwrap().unwrap();
        let text = String::from_utf8(resp.clone()).unwrap();
        assert!(text.contains("digest-uri=\"zookeeper-quorum/zk-quorum-sasl-md5\""), "{text}");
        assert!(!text.contains("bobsecret"));
        let SaslStep::Complete { token, authorization_id } = s.step(&resp, &users()).unwrap() else {
            panic!()
        };
        assert_eq!(authorization_id, "bob");
        assert_eq!(c.step(&token).unwrap(), None);
        assert!(c.is_complete());
        // The client-port server (protocol "zookeeper") refuses the quorum's digest-uri.
        let mut s2 = DigestMd5Server::new("n9".into());
        s2.step(b"", &users()).unwrap();
        let mut c2 = DigestMd5Client::new(
            "bob".into(),
            Secret::new("bobsecret"),
            "zookeeper-quorum",
            "zk-quorum-sasl-md5",
            "c9".into(),
        );
        let r2 = c2.step(&ch).unwrap().unwrap();
        assert!(s2.step(&r2, &users()).is_err());
    }

    #[test]
    fn client_refuses_a_wrong_rspauth_and_bad_challenges() {
        let mut c = DigestMd5Client::new("bob".into(), Secret::new("pw"), "p", "s", "c".into());
        c.step(b"realm=\"s\",nonce=\"n\",qop=\"auth\",charset=utf-8,algorithm=md5-sess").unwrap();
        assert!(c.step(b"rspauth=00000000000000000000000000000000").is_err());
        for bad in [&b""[..], b"nonce=\"n\"", b"nonce=\"n\",algorithm=md5-sess,qop=\"auth-conf\"", b"\xff"] {
            let mut c = DigestMd5Client::new("bob".into(), Secret::new("pw"), "p", "s", "c".into());
            assert!(c.step(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'a'; MAX_CHALLENGE_BYTES + 1];
        let mut c = DigestMd5Client::new("bob".into(), Secret::new("pw"), "p", "s", "c".into());
        assert!(c.step(&long).is_err());
    }
}
