//! TLS and SASL with the Rust `zookeeper-client` crate (its `tls` and `sasl-digest-md5`
//! features): an x509 ACL that lets one client certificate in and keeps another out, a client
//! that does not trust the server's CA, and a SASL DIGEST-MD5 login with a sasl ACL. zkd runs
//! in-process; the certificates are made here with the `openssl` command.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zookeeper_client as zk;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap_or_else(|e| {
        panic!("the openssl command is needed to make test certificates (apt-get install openssl): {e}")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 (PEM key store: chain + key) and client certificates.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=zkd rust test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &args);
        let p = Pki { dir };
        p.issue(
            "server",
            "/CN=localhost",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        let store = [p.read("server.crt"), p.read("server.key")].concat();
        std::fs::write(d.join("server.pem"), store).unwrap();
        p
    }

    fn issue(&self, name: &str, subj: &str, ext: &str) {
        let d = self.dir.path();
        std::fs::write(d.join(format!("{name}.ext")), format!("basicConstraints=CA:FALSE\n{ext}")).unwrap();
        let (key, csr, crt, extf) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        let mut args = vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        openssl(d, &args);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                &crt,
                "-extfile",
                &extf,
            ],
        );
    }

    fn client(&self, name: &str, subj: &str) -> (String, String) {
        self.issue(name, subj, "extendedKeyUsage=clientAuth\n");
        (self.read(&format!("{name}.crt")), self.read(&format!("{name}.key")))
    }

    fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(f)).unwrap()
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

struct Server {
    handle: Option<zkd::server::ServerHandle>,
    plain: String,
    secure: Option<String>,
    _dir: tempfile::TempDir,
    _hold: Option<std::net::TcpListener>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// zkd with `extra` in zoo.cfg; `secure`: a secureClientPort too (ZooKeeper's 0 means "none",
/// so the port is held by a bound, not listening, socket, as tests/py/ports.py holds it).
fn start(extra: &str, secure: bool, jaas: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hold = secure.then(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        std::net::TcpListener::from(s)
    });
    let secure_lines = match &hold {
        Some(h) => format!(
            "secureClientPort={}\nsecureClientPortAddress=127.0.0.1\n",
            h.local_addr().unwrap().port()
        ),
        None => String::new(),
    };
    let text = format!(
        "tickTime=200\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n{secure_lines}{extra}\n",
        dir.path().display()
    );
    let (mut cfg, _) = zkd::config::Config::parse_str(&text, dir.path()).unwrap();
    if let Some(j) = jaas {
        let p = dir.path().join("jaas.conf");
        std::fs::write(&p, j).unwrap();
        cfg.security.jaas_config = Some(p.display().to_string());
    }
    let handle = zkd::server::start(
        &cfg,
        zkd::server::RunOptions { shards: Some(2), cores: None, in_memory: true, dedicated_replica: false },
    )
    .unwrap();
    let plain = format!("127.0.0.1:{}", handle.addr.port());
    let secure = handle.secure_addr.map(|a| a.to_string());
    Server { handle: Some(handle), plain, secure, _dir: dir, _hold: hold }
}

fn tls(pki: &Pki, identity: Option<&(String, String)>) -> zk::TlsOptions {
    let t = zk::TlsOptions::no_ca().with_pem_ca_certs(&pki.read("ca.pem")).unwrap();
    match identity {
        Some((crt, key)) => t.with_pem_identity(crt, key).unwrap(),
        None => t,
    }
}

async fn connect_tls(s: &Server, t: zk::TlsOptions) -> Result<zk::Client, zk::Error> {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(4))
        .connection_timeout(Duration::from_secs(3))
        .tls(t)
        .secure_connect(s.secure.as_deref().unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_client_over_tls_with_x509_acls() {
    let pki = Pki::new();
    let extra = format!(
        "ssl.keyStore.location={}\nssl.trustStore.location={}\nssl.clientAuth=want\n",
        pki.path("server.pem"),
        pki.path("ca.pem")
    );
    let s = start(&extra, true, None);
    let alice = pki.client("alice", "/C=US/O=zkd test/CN=alice");
    let bob = pki.client("bob", "/C=US/O=zkd test/CN=bob");
    let a = connect_tls(&s, tls(&pki, Some(&alice))).await.unwrap();
    let only_alice = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("x509", "CN=alice,O=zkd test,C=US"))];
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&only_alice));
    a.create("/alice", b"a", &opts).await.unwrap();
    assert_eq!(a.get_data("/alice").await.unwrap().0, b"a");
    let b = connect_tls(&s, tls(&pki, Some(&bob))).await.unwrap();
    assert_eq!(b.get_data("/alice").await.unwrap_err(), zk::Error::NoAuth);
    // No client certificate (clientAuth=want): connected, without x509 rights.
    let anon = connect_tls(&s, tls(&pki, None)).await.unwrap();
    assert_eq!(anon.get_data("/alice").await.unwrap_err(), zk::Error::NoAuth);
    // A client that does not trust the server's CA gets no connection.
    let other = Pki::new();
    assert!(connect_tls(&s, tls(&other, None)).await.is_err());
    // The plain port serves too, and a plain client has no x509 id.
    let plain =
        zk::Client::connector().session_timeout(Duration::from_secs(4)).connect(&s.plain).await.unwrap();
    assert_eq!(plain.get_data("/alice").await.unwrap_err(), zk::Error::NoAuth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_client_sasl_digest_md5() {
    let jaas = "Server {\n org.apache.zookeeper.server.auth.DigestLoginModule required\n user_bob=\"bobsecret\"\n user_alice=\"alicesecret\";\n};\n";
    let s = start(
        "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        false,
        Some(jaas),
    );
    let sasl = |u: &'static str, p: &'static str| {
        let mut c = zk::Client::connector();
        c.session_timeout(Duration::from_secs(4)).connection_timeout(Duration::from_secs(3));
        c.sasl(zk::SaslOptions::digest_md5(u, p));
        c
    };
    let bob = sasl("bob", "bobsecret").connect(&s.plain).await.unwrap();
    let only_bob = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("sasl", "bob"))];
    bob.create("/bob", b"b", &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&only_bob))).await.unwrap();
    assert_eq!(bob.get_data("/bob").await.unwrap().0, b"b");
    let alice = sasl("alice", "alicesecret").connect(&s.plain).await.unwrap();
    assert_eq!(alice.get_data("/bob").await.unwrap_err(), zk::Error::NoAuth);
    assert!(sasl("bob", "wrong").connect(&s.plain).await.is_err(), "a wrong password gets no session");
}
