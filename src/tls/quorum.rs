//! TLS between ensemble members (`sslQuorum`, `ssl.quorum.*`, `portUnification`), as ZooKeeper
//! 3.8's `QuorumX509Util` sets it up: one key store and one trust store serve both directions,
//! so every quorum connection (election and learner↔leader) is mutually authenticated — the side
//! that accepts asks for the other's certificate (`ssl.quorum.clientAuth`, default need), the side
//! that connects checks the accepting side's certificate and, with
//! `ssl.quorum.hostnameVerification` (default true), that it names the host of its server line.
//!
//! With `portUnification=true` the quorum listeners accept TLS and plain TCP alike, told apart by
//! the first byte (ZooKeeper's `UnifiedServerSocket`: a TLS record starts with 0x16, a quorum
//! handshake or packet with the high byte of a length or a sid, never 0x16 in practice); this
//! server itself connects with TLS exactly when `sslQuorum=true`. That is the rolling upgrade:
//! every member gets `portUnification=true`, then `sslQuorum=true` one by one, then
//! `portUnification` goes.
//!
//! The handshake runs on the connection's own task under a deadline the caller gives (cnxTimeout
//! on the election port, tickTime × initLimit on the quorum port): a peer that stalls it costs
//! only its connection. rustls is a state machine; futures-rustls drives it over the glommio
//! socket, so nothing blocks the executor.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use parking_lot::{Mutex, RwLock};
use rustls::client::danger::HandshakeSignatureValid as Valid;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::security::SslConfig;

use super::store;

/// A quorum connection's byte stream: plain TCP or TLS over it.
pub enum QStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl QStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            QStream::Plain(s) => s,
            QStream::Tls(t) => t.get_ref().0,
        }
    }

    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().peer_addr().map_err(io::Error::from)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on).map_err(io::Error::from)
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(t).map_err(io::Error::from)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, QStream::Tls(_))
    }

    /// The subject of the other member's certificate (TLS only).
    pub fn peer_subject(&self) -> Option<String> {
        match self {
            QStream::Plain(_) => None,
            QStream::Tls(t) => t.get_ref().1.peer_certificates().and_then(super::client_id),
        }
    }
}

impl std::os::fd::AsRawFd for QStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for QStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            QStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            QStream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for QStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            QStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            QStream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            QStream::Plain(s) => Pin::new(s).poll_flush(cx),
            QStream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            QStream::Plain(s) => Pin::new(s).poll_close(cx),
            QStream::Tls(t) => Pin::new(t.as_mut()).poll_close(cx),
        }
    }
}

/// Both directions' rustls configurations, swapped together on a reload.
struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The quorum's TLS: what the election and quorum ports use for every connection.
pub struct QuorumTls {
    ssl: SslConfig,
    /// `sslQuorum`: connect with TLS (else plain, with only `portUnification`).
    dial_tls: bool,
    /// `portUnification`: listeners take plain TCP too.
    unified: bool,
    current: RwLock<Arc<Configs>>,
    stamps: Mutex<Vec<super::Stamp>>,
    pub reloads: AtomicU64,
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumTls")
            .field("ssl", &self.ssl)
            .field("dial_tls", &self.dial_tls)
            .field("unified", &self.unified)
            .finish_non_exhaustive()
    }
}

impl QuorumTls {
    /// Reads the stores (at start-up, off the executors). The error names the key or file.
    pub fn new(ssl: &SslConfig, ssl_quorum: bool, port_unification: bool) -> Result<Arc<QuorumTls>, String> {
        let stamps = super::stamps_of(ssl);
        let cfgs = build(ssl)?;
        Ok(Arc::new(QuorumTls {
            ssl: ssl.clone(),
            dial_tls: ssl_quorum,
            unified: port_unification,
            current: RwLock::new(Arc::new(cfgs)),
            stamps: Mutex::new(stamps),
            reloads: AtomicU64::new(0),
        }))
    }

    fn configs(&self) -> Arc<Configs> {
        self.current.read().clone()
    }

    /// Whether this server opens its quorum connections with TLS.
    pub fn dials_tls(&self) -> bool {
        self.dial_tls
    }

    /// The server side of a connection a quorum listener accepted, within `deadline`: the TLS
    /// handshake (or, under portUnification, plain TCP when the first byte is not a TLS record).
    pub async fn accept(&self, s: TcpStream, deadline: Duration) -> Result<QStream, String> {
        let work = async {
            if self.unified {
                let mut b = [0u8; 1];
                match s.peek(&mut b).await {
                    Ok(0) => return Err("closed before its first byte".to_string()),
                    Ok(_) if !super::looks_like_tls(b[0]) => return Ok(QStream::Plain(s)),
                    Ok(_) => {}
                    Err(e) => return Err(format!("reading its first byte: {e}")),
                }
            }
            let acceptor = futures_rustls::TlsAcceptor::from(self.configs().server.clone());
            match acceptor.accept(s).await {
                Ok(t) => Ok(QStream::Tls(Box::new(futures_rustls::TlsStream::Server(t)))),
                Err(e) => Err(format!("TLS handshake failed: {}", describe(&e))),
            }
        };
        within(deadline, work).await
    }

    /// The client side of a connection this server opened to `host` (the host of the other's
    /// server line), within `deadline`.
    pub async fn connect(&self, s: TcpStream, host: &str, deadline: Duration) -> Result<QStream, String> {
        if !self.dial_tls {
            return Ok(QStream::Plain(s));
        }
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} cannot be checked against a certificate: {e}"))?;
        let connector = futures_rustls::TlsConnector::from(self.configs().client.clone());
        let work = async {
            match connector.connect(name, s).await {
                Ok(t) => Ok(QStream::Tls(Box::new(futures_rustls::TlsStream::Client(t)))),
                Err(e) => Err(format!("TLS handshake failed: {}", describe(&e))),
            }
        };
        within(deadline, work).await
    }

    /// Rebuilds the configurations if a store file changed. None: nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = super::stamps_of(&self.ssl);
        {
            let mut old = self.stamps.lock();
            if *old == now {
                return None;
            }
            *old = now;
        }
        Some(build(&self.ssl).map(|c| {
            *self.current.write() = Arc::new(c);
            self.reloads.fetch_add(1, Ordering::Relaxed);
        }))
    }

    /// With `sslQuorumReloadCertFiles=true`: a thread that checks the store files every `every`
    /// and swaps in new configurations when they changed; open connections keep theirs.
    pub fn start_reloader(self: &Arc<Self>, stop: Arc<AtomicBool>, every: Duration) -> io::Result<()> {
        if !self.ssl.cert_reload {
            return Ok(());
        }
        let me = self.clone();
        std::thread::Builder::new().name("zkd-qtls-reload".into()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(every); // own thread, never an executor
                match me.reload_if_changed() {
                    None => {}
                    Some(Ok(())) => tracing::info!(
                        "quorum TLS: the key/trust store changed; new quorum connections use it"
                    ),
                    Some(Err(e)) => tracing::error!(
                        "quorum TLS: cannot reload the changed store ({e}); connections keep the previous certificates"
                    ),
                }
            }
        })?;
        Ok(())
    }
}

/// A handshake error as a sentence (a refused certificate names its subject).
fn describe(e: &io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(o))) => o.to_string(),
        _ => e.to_string(),
    }
}

async fn within<T>(
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let late = async {
        glommio::timer::sleep(deadline).await;
        Err(format!("no TLS handshake within {} ms", deadline.as_millis()))
    };
    futures_lite::future::or(work, late).await
}

/// Both sides' configurations from the `ssl.quorum.*` stores.
fn build(ssl: &SslConfig) -> Result<Configs, String> {
    let server = super::build_named(ssl, super::QUORUM_NAMES)?;
    let (provider, versions) = super::provider_and_versions(ssl, super::QUORUM_NAMES)?;
    let ts = ssl.trust_store.as_ref().ok_or("ssl.quorum.trustStore.location is not set")?;
    let mut roots = RootCertStore::empty();
    for c in store::load_trust("quorum.trustStore", ts)? {
        roots.add(c).map_err(|e| {
            format!("ssl.quorum.trustStore {}: a certificate cannot be used as a CA ({e})", ts.location)
        })?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("ssl.quorum.trustStore {}: {e}", ts.location))?;
    let verifier = Arc::new(MemberVerifier { inner: webpki, check_name: ssl.hostname_verification });
    let ks = ssl.key_store.as_ref().ok_or("ssl.quorum.keyStore.location is not set")?;
    let id = store::load_identity("quorum.keyStore", ks)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("ssl.quorum.enabledProtocols: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(id.chain, id.key)
        .map_err(|e| {
            format!(
                "ssl.quorum.keyStore {}: the certificate and key do not make an identity ({e})",
                ks.location
            )
        })?;
    Ok(Configs { server: Arc::new(server), client: Arc::new(client) })
}

/// Checks the accepting member's chain against the quorum trust store, and its name only with
/// `ssl.quorum.hostnameVerification=true` (ZooKeeper's `ZKTrustManager`).
#[derive(Debug)]
struct MemberVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(naming(end_entity, e)),
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A refused certificate's error, with the certificate's subject in it: the log line then names
/// the member that was kept out (the sid is not known before the TLS handshake).
#[derive(Debug)]
struct Refused {
    subject: String,
    cause: rustls::Error,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the certificate of \"{}\" is refused: ", self.subject)?;
        match &self.cause {
            rustls::Error::InvalidCertificate(c) => write!(f, "{c:?}"),
            e => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Refused {}

fn naming(cert: &CertificateDer<'_>, e: rustls::Error) -> rustls::Error {
    match e {
        rustls::Error::InvalidCertificate(_) => {
            let subject = super::dn::subject_of(cert.as_ref()).unwrap_or_else(|_| "?".into());
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                Refused { subject, cause: e },
            ))))
        }
        e => e,
    }
}

/// The accepting side's check of the connecting member's certificate (WebPKI's), its refusals
/// naming the certificate's subject.
#[derive(Debug)]
pub(crate) struct NamingClientVerifier(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for NamingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now).map_err(|e| naming(end_entity, e))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<Valid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<Valid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
