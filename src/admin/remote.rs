//! A client of a running server's operations surface, for `zkd election status`: the AdminServer's
//! `election` command over HTTP, or the `elec` four-letter word on the client port when a
//! configuration has no AdminServer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::Config;

/// The most of an answer read (an election report of a few hundred servers fits many times).
pub const ANSWER_MAX_BYTES: u64 = 4 << 20;

/// Where to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An AdminServer (`host:port`) and its `admin.commandURL`.
    Admin { host_port: String, command_url: String },
    /// A client port, for the `elec` four-letter word.
    ClientPort { host_port: String },
}

/// A wildcard listen address is reached on loopback.
fn reachable_host(listen: &str) -> &str {
    match listen {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    }
}

impl Target {
    /// What a zoo.cfg says: its AdminServer when enabled, else its client port.
    pub fn from_config(cfg: &Config) -> Result<Target, String> {
        if cfg.admin_enable_server {
            let host = reachable_host(&cfg.admin_server_address);
            return Ok(Target::Admin {
                host_port: crate::config::host_port(host, cfg.admin_server_port),
                command_url: cfg.admin_command_url.clone(),
            });
        }
        // Four-letter words are plaintext: a secure-only port cannot carry them.
        let port = match cfg.client_port {
            Some(p) if p != 0 => p,
            _ => return Err("admin.enableServer=false and no fixed plaintext clientPort: the configuration does not say where the server listens; use --server host:adminPort".into()),
        };
        let host = reachable_host(cfg.client_port_address.as_deref().unwrap_or(""));
        Ok(Target::ClientPort { host_port: crate::config::host_port(host, port) })
    }

    fn addr(&self) -> &str {
        match self {
            Target::Admin { host_port, .. } | Target::ClientPort { host_port } => host_port,
        }
    }
}

fn connect(host_port: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> =
        host_port.to_socket_addrs().map_err(|e| format!("{host_port} does not resolve: {e}"))?.collect();
    let mut last = format!("{host_port} does not resolve to any address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {a}: {e} (is the server running?)"),
        }
    }
    Err(last)
}

fn read_bounded(s: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    s.take(ANSWER_MAX_BYTES + 1).read_to_end(&mut buf).map_err(|e| format!("reading the answer: {e}"))?;
    if buf.len() as u64 > ANSWER_MAX_BYTES {
        return Err(format!("the answer is larger than {ANSWER_MAX_BYTES} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "the answer is not UTF-8 text".to_owned())
}

/// GET `path` from an HTTP/1.1 server that closes the connection after its answer (the
/// AdminServer does); the body of a 200 answer.
pub fn http_get(host_port: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let mut s = connect(host_port, timeout)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("sending to {host_port}: {e}"))?;
    let text = read_bounded(&mut s)?;
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| format!("{host_port} did not answer with HTTP"))?;
    let status = head.lines().next().unwrap_or("");
    if status.split(' ').nth(1) != Some("200") {
        return Err(format!("{host_port}{path} answered {status:?}"));
    }
    Ok(body.to_owned())
}

/// A four-letter word's answer.
pub fn four_letter(host_port: &str, word: &str, timeout: Duration) -> Result<String, String> {
    let mut s = connect(host_port, timeout)?;
    s.write_all(word.as_bytes()).map_err(|e| format!("sending to {host_port}: {e}"))?;
    read_bounded(&mut s)
}

/// The election report of the server at `target`: the text `zkd election status` prints, and
/// the AdminServer's JSON when asked there.
pub fn election_status(
    target: &Target,
    timeout: Duration,
) -> Result<(String, Option<serde_json::Value>), String> {
    match target {
        Target::Admin { host_port, command_url } => {
            let path = format!("{}/election", command_url.trim_end_matches('/'));
            let body = http_get(host_port, &path, timeout)?;
            let v: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| format!("{host_port}{path} did not answer JSON: {e}"))?;
            if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                return Err(format!(
                    "{}: {err} (a zkd server answers this command; Apache ZooKeeper does not)",
                    target.addr()
                ));
            }
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| format!("{host_port}{path}: the answer has no election report"))?
                .to_owned();
            Ok((text, Some(v)))
        }
        Target::ClientPort { host_port } => {
            let text = four_letter(host_port, "elec", timeout)?;
            if text.is_empty() {
                return Err(format!(
                    "{host_port} closed the connection without an answer: not a zkd server, or `elec` is not in 4lw.commands.whitelist"
                ));
            }
            if text.contains("is not executed because it is not in the whitelist") {
                return Err(format!("{host_port}: {}; add elec to 4lw.commands.whitelist", text.trim()));
            }
            Ok((text, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_a_config() {
        let dir = std::path::Path::new("/tmp");
        let (cfg, _) = Config::parse_str("dataDir=/tmp/x\nclientPort=2181\n", dir).unwrap();
        assert_eq!(
            Target::from_config(&cfg).unwrap(),
            Target::Admin { host_port: "127.0.0.1:8080".into(), command_url: "/commands".into() }
        );
        let (cfg, _) = Config::parse_str(
            "dataDir=/tmp/x\nclientPort=2181\nclientPortAddress=::1\nadmin.enableServer=false\n",
            dir,
        )
        .unwrap();
        assert_eq!(Target::from_config(&cfg).unwrap(), Target::ClientPort { host_port: "[::1]:2181".into() });
        let (cfg, _) = Config::parse_str(
            "dataDir=/tmp/x\nclientPort=2181\nadmin.serverAddress=10.1.2.3\nadmin.serverPort=9999\nadmin.commandURL=/c/\n",
            dir,
        )
        .unwrap();
        assert_eq!(
            Target::from_config(&cfg).unwrap(),
            Target::Admin { host_port: "10.1.2.3:9999".into(), command_url: "/c/".into() }
        );
        let (cfg, _) =
            Config::parse_str("dataDir=/tmp/x\nclientPort=0\nadmin.enableServer=false\n", dir).unwrap();
        assert!(Target::from_config(&cfg).unwrap_err().contains("--server"));
    }

    #[test]
    fn a_non_200_answer_is_an_error() {
        use crate::admin::http::{Handler, HttpServer, Response};
        let h: Handler = std::sync::Arc::new(|p: &str, _q: &str| match p {
            "/commands/election" => Response::ok(
                "application/json",
                r#"{"text" : "leader: 3\n", "command" : "election", "error" : null}"#.into(),
            ),
            _ => Response::not_found(),
        });
        let srv = HttpServer::start("t", "127.0.0.1:0".parse().unwrap(), h).unwrap();
        let t = Target::Admin { host_port: srv.addr.to_string(), command_url: "/commands".into() };
        let (text, json) = election_status(&t, Duration::from_secs(5)).unwrap();
        assert_eq!(text, "leader: 3\n");
        assert_eq!(json.unwrap()["command"], "election");
        let t = Target::Admin { host_port: srv.addr.to_string(), command_url: "/other".into() };
        let e = election_status(&t, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("404"), "{e}");
        srv.stop();
    }
}
