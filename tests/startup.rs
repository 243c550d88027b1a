//! `zkd serve` start-up, through the binary: configurations this build cannot honour (a
//! replicated ensemble, the quorum's TLS/SASL, JKS stores, Kerberos, Java classes) are refused with exit code 2 and a sentence naming the keys;
//! the ones it can (a single server line, security switches that are off) serve; `--port-file`
//! reports the port of a clientPort=0 config, and every shard listens on it.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A directory with a zoo.cfg: `dataDir` (created), clientPort=0, and `extra`.
fn config(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\n{extra}\n",
            data.display()
        ),
    )
    .unwrap();
    (dir, cfg)
}

/// Runs `zkd serve` on `cfg`, expecting it to refuse: its exit code and stderr. A zkd that
/// starts instead is killed after 20 s and fails the test.
fn refused(cfg: &Path) -> (i32, String) {
    refused_with(cfg, None)
}

/// `refused`, with the JAAS file given the way zkServer.sh gives it to ZooKeeper
/// (SERVER_JVMFLAGS).
fn refused_with(cfg: &Path, jaas: Option<&Path>) -> (i32, String) {
    let port_file = cfg.parent().unwrap().join("zkd.port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkd"));
    if let Some(j) = jaas {
        cmd.env("SERVER_JVMFLAGS", format!("-Djava.security.auth.login.config={}", j.display()));
    }
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(cfg)
        .arg("--port-file")
        .arg(&port_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline || port_file.exists() {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("zkd started with {} instead of refusing it", std::fs::read_to_string(cfg).unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

/// A member of an ensemble needs `dataDir/myid` naming one of its server lines, as ZooKeeper's;
/// without it (or with a stranger's id) the start is refused with exit 2 and one sentence.
#[test]
fn an_ensemble_without_a_fitting_myid_is_refused_with_exit_2() {
    let (_d, cfg) = config("initLimit=10\nsyncLimit=5\nserver.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\nserver.3=127.0.0.3:2888:3888");
    let myid = cfg.parent().unwrap().join("data").join("myid");
    let (code, err) = refused(&cfg);
    assert_eq!(code, 2, "{err}");
    let want = format!(
        "{} is missing: a member of an ensemble (server.1, server.2, server.3) needs its server id there.",
        myid.display()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    std::fs::write(&myid, "4\n").unwrap();
    let (code, err) = refused(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("says this is server 4, which is not in the server list (server.1, server.2, server.3)"),
        "{err}"
    );
}

#[test]
fn an_invalid_ensemble_is_refused_with_exit_2_in_one_sentence() {
    for (lines, want) in [
        (
            "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\nserver.01=127.0.0.3:2888:3888",
            "server.1 and server.01 both name server id 1: each server id must appear once.",
        ),
        (
            "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2888:3889",
            "127.0.0.1:2888 is the quorum address of server.1 and also the quorum address of server.2",
        ),
        (
            "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\npeerType=leader",
            "peerType=\"leader\"",
        ),
    ] {
        let (_d, cfg) = config(&format!("initLimit=10\nsyncLimit=5\n{lines}"));
        let (code, err) = refused(&cfg);
        assert_eq!(code, 2, "{lines}: {err}");
        assert!(err.contains(want), "{lines}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn unsupported_security_settings_are_refused_with_exit_2_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let jks = d.path().join("keystore.jks");
    std::fs::write(&jks, b"not read").unwrap();
    let krb = d.path().join("jaas-krb.conf");
    std::fs::write(
        &krb,
        "Server { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true \
         keyTab=\"/etc/zk.keytab\" principal=\"zookeeper/host@REALM\"; };",
    )
    .unwrap();
    let missing_pem = d.path().join("missing.pem");
    let secure = "secureClientPort=0\nclient.portUnification=true\nssl.clientAuth=none\n";
    for (line, jaas, named) in [
        (
            format!("{secure}ssl.keyStore.location={}\nssl.keyStore.password=hunter2", jks.display()),
            None,
            format!("keytool -importkeystore -srckeystore {}", jks.display()),
        ),
        (
            format!("{secure}ssl.keyStore.location={}", missing_pem.display()),
            None,
            format!("cannot read {}", missing_pem.display()),
        ),
        ("sslQuorum=true".to_string(), None, "sslQuorum=true needs ssl.quorum.keyStore.location".into()),
        (
            "quorum.auth.kerberos.servicePrincipal=zkquorum/host".into(),
            None,
            "quorum.auth.kerberos.servicePrincipal=zkquorum/host asks for Kerberos".into(),
        ),
        (
            "authProvider.1=com.example.MyAuth".into(),
            None,
            "authProvider.1=com.example.MyAuth names a Java authentication provider".into(),
        ),
        (
            "sessionRequireClientSASLAuth=true".into(),
            None,
            "enforce.auth.schemes names sasl, and authentication scheme sasl is not available".into(),
        ),
        (
            "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into(),
            Some(&krb),
            "(Kerberos, SASL mechanism GSSAPI), which this build does not support".into(),
        ),
    ] {
        let (_d, cfg) = config(&line);
        let (code, err) = refused_with(&cfg, jaas.map(|p| p.as_path()));
        assert_eq!(code, 2, "{line}: {err}");
        assert!(err.contains(&named), "{line}: the key is named: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("hunter2"), "secrets are not echoed: {err}");
    }
}

#[test]
fn a_single_server_line_and_security_switches_that_are_off_serve_standalone() {
    let (d, cfg) = config(
        "server.1=127.0.0.1:2888:3888\nenforce.auth.enabled=false\nsessionRequireClientSASLAuth=false\n\
         serverCnxnFactory=org.apache.zookeeper.server.NIOServerCnxnFactory\nsecureClientPort=0\n\
         authProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    );
    std::fs::write(d.path().join("data").join("myid"), "1\n").unwrap();
    let (mut child, port) = spawn_zkd(&cfg, |c| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    });
    let srvr = four_letter(port, "srvr");
    let conf = four_letter(port, "conf");
    let mut r = Raw::connect(port);
    assert_eq!(r.create("/standalone", b"1"), 0);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    assert!(conf.contains("serverId=1"), "myid is read as ZooKeeper reads it: {conf}");
}

#[test]
fn port_file_reports_the_port_every_shard_listens_on() {
    let (_d, cfg) = config("maxClientCnxns=0");
    let (mut child, port) = spawn_zkd(&cfg, |c| {
        c.arg("--shards").arg("2").stdout(Stdio::null()).stderr(Stdio::null());
    });
    assert_ne!(port, 0);
    // SO_REUSEPORT spreads connections over the shards by a hash of the 4-tuple: with 32 of them,
    // both shards get some unless both listen on the reported port (chance of a false failure:
    // 2 in 2^32).
    let conns: Vec<Raw> = (0..32).map(|_| Raw::connect(port)).collect();
    let mntr = four_letter(port, "mntr");
    drop(conns);
    child.kill().unwrap();
    child.wait().unwrap();
    let per_shard: Vec<u64> = (0..2)
        .map(|i| {
            let key = format!("zkd_shard_{i}_connections\t");
            let line = mntr.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key}: {mntr}"));
            line[key.len()..].parse().unwrap()
        })
        .collect();
    assert!(per_shard.iter().all(|&n| n > 0), "connections per shard {per_shard:?}:\n{mntr}");
    assert!(per_shard.iter().sum::<u64>() >= 32, "{per_shard:?}");
}
