//! A small HTTP/1.1 server for the AdminServer and Prometheus endpoints: one thread per listener,
//! one request per connection (`Connection: close`), bounded request size and read time. It is
//! off the request path, so simplicity wins over throughput.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn ok(content_type: &'static str, body: String) -> Self {
        Response { status: 200, content_type, body }
    }
    pub fn not_found() -> Self {
        Response { status: 404, content_type: "text/plain", body: "Not Found\n".into() }
    }
}

pub type Handler = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

/// A running listener; dropping the handle does not stop it, `stop` does.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(name: &str, addr: SocketAddr, handler: Handler) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            while !st.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if let Err(e) = serve_one(s, &handler) {
                            tracing::debug!("http: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!("http accept on {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })?;
        Ok(HttpServer { addr, stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// Splits a request head into (method, path, query).
pub fn parse_request_line(head: &str) -> Option<(&str, &str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some((method, path, query))
}

fn serve_one(mut s: TcpStream, handler: &Handler) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match head_state(&buf) {
            HeadState::Complete => break,
            HeadState::TooLarge => {
                return respond(
                    &mut s,
                    Response { status: 400, content_type: "text/plain", body: "request too large\n".into() },
                )
            }
            HeadState::Incomplete => {}
        }
    }
    let resp = match route(&buf) {
        Route::Bad => Response { status: 400, content_type: "text/plain", body: "bad request\n".into() },
        Route::MethodNotAllowed => {
            Response { status: 405, content_type: "text/plain", body: "method not allowed\n".into() }
        }
        Route::Get { path, query } => handler(&path, &query),
    };
    respond(&mut s, resp)
}

/// What the bytes received so far on a connection amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadState {
    /// The head is not over yet: read more.
    Incomplete,
    /// The head ended (an empty line).
    Complete,
    /// More than [`MAX_REQUEST_BYTES`] without the end of the head: answered 400.
    TooLarge,
}

pub fn head_state(buf: &[u8]) -> HeadState {
    if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
        HeadState::Complete
    } else if buf.len() > MAX_REQUEST_BYTES {
        HeadState::TooLarge
    } else {
        HeadState::Incomplete
    }
}

/// What a complete request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No `METHOD target HTTP/1.x` line: 400.
    Bad,
    /// A method other than GET and HEAD: 405.
    MethodNotAllowed,
    /// GET or HEAD of `path` with `query` (the part after '?', maybe empty).
    Get { path: String, query: String },
}

/// Reads a request head (bytes that need not be UTF-8; invalid sequences read as U+FFFD).
pub fn route(head: &[u8]) -> Route {
    let head = String::from_utf8_lossy(head);
    match parse_request_line(&head) {
        None => Route::Bad,
        Some((m, _, _)) if m != "GET" && m != "HEAD" => Route::MethodNotAllowed,
        Some((_, path, query)) => Route::Get { path: path.to_owned(), query: query.to_owned() },
    }
}

fn respond(s: &mut TcpStream, r: Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: zkd\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(r.body.as_bytes())?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line("GET /commands/mntr?x=1 HTTP/1.1\r\n"),
            Some(("GET", "/commands/mntr", "x=1"))
        );
        assert_eq!(parse_request_line("GET /metrics HTTP/1.0\r\n"), Some(("GET", "/metrics", "")));
        assert_eq!(parse_request_line("garbage"), None);
    }

    #[test]
    fn serves_and_stops() {
        let h: Handler = Arc::new(|p: &str, q: &str| Response::ok("text/plain", format!("{p}|{q}")));
        let srv = HttpServer::start("t", "127.0.0.1:0".parse().unwrap(), h).unwrap();
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.write_all(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n/a|b=c"), "{out}");
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.write_all(b"POST / HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        srv.stop();
    }
}
