//! A JAAS login configuration file (the one `-Djava.security.auth.login.config=` names), read as
//! ZooKeeper's server reads its `Server` section: `SaslServerCallbackHandler` takes every option
//! named `user_NAME` as NAME's DIGEST-MD5 password; a Kerberos login module would make it
//! GSSAPI, which this build refuses. Pure: text in, users out.
//!
//! Syntax (Java's `ConfigFile`): `Name { module.Class flag key="value" ...; ... };`, with `//` and
//! `/* */` comments.

use super::Secret;

/// Who may log in with DIGEST-MD5, and how names become ids (`SaslServerCallbackHandler`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaslUsers {
    /// `user_NAME="password"` of the JAAS section.
    pub users: Vec<(String, Secret)>,
    /// `zookeeper.SASLAuthenticationProvider.superPassword`: the password of user "super".
    pub super_password: Option<Secret>,
    /// `zookeeper.kerberos.removeHostFromPrincipal` / `removeRealmFromPrincipal`.
    pub remove_host: bool,
    pub remove_realm: bool,
}

/// One login module line of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub module: String,
    pub flag: String,
    /// Values are kept as secrets: `user_*` options are passwords.
    pub options: Vec<(String, Secret)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Semi,
    Eq,
    Word(String),
    Quoted(String),
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let line_of = |i: usize| text[..i].matches('\n').count() + 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .ok_or_else(|| format!("line {}: unclosed /* comment", line_of(i)))?;
                i += 2 + end + 2;
            }
            b'{' => {
                out.push(Tok::Open);
                i += 1;
            }
            b'}' => {
                out.push(Tok::Close);
                i += 1;
            }
            b';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            b'=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            b'"' | b'\'' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&ch) = b.get(i) else {
                        return Err(format!("line {}: unclosed quoted value", line_of(start)));
                    };
                    if ch == c {
                        i += 1;
                        break;
                    }
                    if ch == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Copy one whole UTF-8 character.
                    let len = text[i..].chars().next().map_or(1, char::len_utf8);
                    s.push_str(&text[i..i + len]);
                    i += len;
                }
                out.push(Tok::Quoted(s));
            }
            _ => {
                let start = i;
                while i < b.len()
                    && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b';' | b'=' | b'"')
                {
                    i += 1;
                }
                out.push(Tok::Word(text[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

/// Parses a whole JAAS file.
pub fn parse(text: &str) -> Result<Vec<Section>, String> {
    let toks = tokens(text)?;
    let mut it = toks.into_iter().peekable();
    let mut sections = Vec::new();
    let word = |t: Option<Tok>, what: &str| match t {
        Some(Tok::Word(w)) => Ok(w),
        other => Err(format!("expected {what}, found {other:?}")),
    };
    while it.peek().is_some() {
        let name = word(it.next(), "a section name")?;
        if it.next() != Some(Tok::Open) {
            return Err(format!("section {name}: expected '{{'"));
        }
        let mut entries = Vec::new();
        loop {
            match it.peek() {
                Some(Tok::Close) => {
                    it.next();
                    break;
                }
                None => return Err(format!("section {name}: missing '}}'")),
                _ => {}
            }
            let module = word(it.next(), "a login module class")?;
            let flag = word(it.next(), "a control flag (required, requisite, sufficient, optional)")?;
            let mut options = Vec::new();
            loop {
                match it.next() {
                    Some(Tok::Semi) => break,
                    Some(Tok::Word(k)) => {
                        if it.next() != Some(Tok::Eq) {
                            return Err(format!("section {name}: option {k} needs '=value'"));
                        }
                        let v = match it.next() {
                            Some(Tok::Quoted(v)) | Some(Tok::Word(v)) => v,
                            other => {
                                return Err(format!(
                                    "section {name}: option {k}: expected a value, found {other:?}"
                                ))
                            }
                        };
                        options.push((k, Secret::new(v)));
                    }
                    other => {
                        return Err(format!("section {name}: expected an option or ';', found {other:?}"))
                    }
                }
            }
            entries.push(Entry { module, flag, options });
        }
        // The ';' after '}' is optional in practice.
        if it.peek() == Some(&Tok::Semi) {
            it.next();
        }
        sections.push(Section { name, entries });
    }
    Ok(sections)
}

/// The DIGEST-MD5 users of the server's login section, as `SaslServerCallbackHandler` collects
/// them (every option `user_NAME="password"`, later ones win). Errors are sentences naming the
/// file's problem and what to use instead.
pub fn digest_users(sections: &[Section], section: &str) -> Result<Vec<(String, Secret)>, String> {
    let s = sections.iter().find(|s| s.name == section).ok_or_else(|| {
        format!(
            "it has no '{section}' section (ZooKeeper refuses this too): add `{section} {{ \
             org.apache.zookeeper.server.auth.DigestLoginModule required user_NAME=\"password\"; }};` \
             or set sasl.serverconfig to the section's name"
        )
    })?;
    let mut users: Vec<(String, Secret)> = Vec::new();
    for e in &s.entries {
        if e.module.contains("Krb5LoginModule")
            || e.options.iter().any(|(k, _)| k == "keyTab" || k == "principal")
        {
            return Err(format!(
                "section '{section}' uses {} (Kerberos, SASL mechanism GSSAPI), which this build does \
                 not support: use org.apache.zookeeper.server.auth.DigestLoginModule with \
                 user_NAME=\"password\" options (DIGEST-MD5), or TLS client certificates (x509)",
                e.module
            ));
        }
        if e.module != "org.apache.zookeeper.server.auth.DigestLoginModule" {
            return Err(format!(
                "section '{section}' uses the login module {}, which zkd cannot load: use \
                 org.apache.zookeeper.server.auth.DigestLoginModule",
                e.module
            ));
        }
        for (k, v) in &e.options {
            if let Some(user) = k.strip_prefix("user_") {
                users.retain(|(u, _)| u != user);
                users.push((user.to_owned(), v.clone()));
            }
        }
    }
    Ok(users)
}

/// The user name and password a member logs in with as a quorum learner: the `username` and
/// `password` options of the `QuorumLearner` section's DigestLoginModule (ZooKeeper's
/// `DigestLoginModule` puts them in the subject that `SaslQuorumAuthLearner` uses).
pub fn digest_login(sections: &[Section], section: &str) -> Result<(String, Secret), String> {
    let s = sections.iter().find(|s| s.name == section).ok_or_else(|| {
        format!(
            "it has no '{section}' section (ZooKeeper refuses this too): add `{section} {{ \
             org.apache.zookeeper.server.auth.DigestLoginModule required username=\"NAME\" \
             password=\"PASSWORD\"; }};`"
        )
    })?;
    for e in &s.entries {
        if e.module.contains("Krb5LoginModule") {
            return Err(format!(
                "section '{section}' uses {} (Kerberos, SASL mechanism GSSAPI), which this build does \
                 not support between ensemble members: use \
                 org.apache.zookeeper.server.auth.DigestLoginModule with username and password (DIGEST-MD5)",
                e.module
            ));
        }
        if e.module != "org.apache.zookeeper.server.auth.DigestLoginModule" {
            continue;
        }
        let get = |k: &str| e.options.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(u), Some(p)) = (get("username"), get("password")) {
            return Ok((u.expose().to_owned(), p));
        }
    }
    Err(format!(
        "section '{section}' has no org.apache.zookeeper.server.auth.DigestLoginModule with \
         username=\"NAME\" and password=\"PASSWORD\""
    ))
}

/// The JAAS file a Java ZooKeeper would read: `-Djava.security.auth.login.config=PATH` in
/// `JVMFLAGS` or `SERVER_JVMFLAGS` (zkServer.sh passes both to the JVM; a later `-D` wins, and
/// SERVER_JVMFLAGS comes later).
pub fn login_config_from_jvm_flags(jvmflags: Option<&str>, server_jvmflags: Option<&str>) -> Option<String> {
    let mut found = None;
    for flags in [jvmflags, server_jvmflags].into_iter().flatten() {
        for tok in flags.split_whitespace() {
            if let Some(p) = tok.strip_prefix("-Djava.security.auth.login.config=") {
                let p = p.trim_matches(|c| c == '"' || c == '\'');
                if !p.is_empty() {
                    found = Some(p.to_owned());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZK_DOC_EXAMPLE: &str = r#"
// The server's section, as ZooKeeper's SASL guide writes it.
Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"
       user_bob="bob's \"secret\"";
};
/* A client section in the same file is ignored by the server. */
Client {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="bob"
       password="bobsecret";
};
"#;

    #[test]
    fn reads_the_server_section() {
        let s = parse(ZK_DOC_EXAMPLE).unwrap();
        assert_eq!(s.len(), 2);
        let users = digest_users(&s, "Server").unwrap();
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["super", "bob"]);
        assert_eq!(users[1].1.expose(), "bob's \"secret\"");
        assert!(!format!("{s:?}").contains("adminsecret"), "passwords are never printed");
    }

    #[test]
    fn refusals_name_the_problem() {
        let s = parse(ZK_DOC_EXAMPLE).unwrap();
        assert!(digest_users(&s, "ZkServer").unwrap_err().starts_with("it has no 'ZkServer' section"));
        let krb = parse(
            "Server { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true \
             keyTab=\"/etc/zk.keytab\" principal=\"zookeeper/host@REALM\"; };",
        )
        .unwrap();
        let e = digest_users(&krb, "Server").unwrap_err();
        assert!(e.contains("Kerberos, SASL mechanism GSSAPI") && e.contains("DigestLoginModule"), "{e}");
        assert!(parse("Server { x required a=; };").is_err());
        assert!(parse("Server { x required a=\"b\"; ").is_err());
    }

    #[test]
    fn jvm_flags() {
        assert_eq!(
            login_config_from_jvm_flags(
                Some("-Xmx1g -Djava.security.auth.login.config=/a.conf"),
                Some("-Djava.security.auth.login.config=/b.conf -Dzookeeper.authProvider.1=x")
            ),
            Some("/b.conf".into())
        );
        assert_eq!(login_config_from_jvm_flags(Some("-Xmx1g"), None), None);
    }

    #[test]
    fn quorum_learner_login() {
        let s = parse(
            "QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required user_q=\"qpw\"; };\n\
             QuorumLearner { org.apache.zookeeper.server.auth.DigestLoginModule required username=\"q\" password=\"qpw\"; };",
        )
        .unwrap();
        let (u, p) = digest_login(&s, "QuorumLearner").unwrap();
        assert_eq!((u.as_str(), p.expose()), ("q", "qpw"));
        assert!(digest_login(&s, "Nope").unwrap_err().contains("no 'Nope' section"));
        assert!(digest_login(&s, "QuorumServer").unwrap_err().contains("username"));
        assert_eq!(digest_users(&s, "QuorumServer").unwrap()[0].0, "q");
    }
}
