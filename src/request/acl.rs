//! ACL evaluation as ZooKeeper's `checkACL` and its providers (ip, digest, and with TLS/SASL x509
//! and sasl), plus `fixupACL`. Pure.
//!
//! The x509 and sasl schemes are always known here: ZooKeeper matches them only when their
//! provider is registered (`authProvider.*`), which with zkd is the case whenever TLS or a JAAS
//! file can give a connection such an id; a zoo.cfg without them sees no difference except that
//! an ACL naming x509/sasl ids is accepted where ZooKeeper answers InvalidACL.

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::proto::{Acl, ErrorCode, Id};

/// `DigestAuthenticationProvider.generateDigest("user:password")` → `user:base64(sha1(...))`.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// `IPAuthenticationProvider.addr2Bytes`: IPv4 dotted quad or IPv6.
fn addr_bytes(s: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 4 {
        let mut v = Vec::with_capacity(4);
        for p in parts {
            let n: u32 = p.parse().ok()?;
            if n > 255 {
                return None;
            }
            v.push(n as u8);
        }
        return Some(v);
    }
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().ok().map(|a| a.octets().to_vec());
    }
    None
}

/// `IPAuthenticationProvider.isValid`: `addr` or `addr/bits`.
pub fn ip_acl_valid(id: &str) -> bool {
    let mut it = id.splitn(2, '/');
    let Some(addr) = it.next().and_then(addr_bytes) else { return false };
    match it.next() {
        None => true,
        Some(b) => b.parse::<i64>().is_ok_and(|bits| bits >= 0 && bits <= addr.len() as i64 * 8),
    }
}

/// `IPAuthenticationProvider.matches`: does client address `client` fall in `acl` (CIDR)?
pub fn ip_matches(client: &str, acl: &str) -> bool {
    let mut it = acl.splitn(2, '/');
    let Some(net) = it.next().and_then(addr_bytes) else { return false };
    let bits = match it.next() {
        None => net.len() * 8,
        Some(b) => match b.parse::<usize>() {
            Ok(b) if b <= net.len() * 8 => b,
            _ => return false,
        },
    };
    let Some(c) = addr_bytes(client) else { return false };
    if c.len() != net.len() {
        return false;
    }
    for i in 0..bits {
        let mask = 0x80u8 >> (i % 8);
        if c[i / 8] & mask != net[i / 8] & mask {
            return false;
        }
    }
    true
}

/// ZooKeeper's `checkACL`: allowed if any ACL entry granting one of `perm`'s bits matches one of
/// the connection's ids; `super` passes everything; an empty ACL passes.
pub fn check_acl(acl: &[Acl], perm: i32, ids: &[Id], _super_digest: Option<&str>) -> Result<(), ErrorCode> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            return Ok(());
        }
        for auth in ids.iter().filter(|i| i.scheme == id.scheme) {
            let hit = match id.scheme.as_str() {
                "digest" | "x509" => auth.id == id.id,
                "ip" => ip_matches(&auth.id, &id.id),
                // SASLAuthenticationProvider.matches: the SASL user "super" matches every sasl id.
                "sasl" => auth.id == id.id || auth.id == "super",
                _ => false,
            };
            if hit {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

/// ZooKeeper's `fixupACL`: removes duplicates, expands `auth` to the connection's authenticated
/// (digest, x509, sasl) ids, and validates every id. InvalidACL when empty or invalid.
pub fn fixup_acl(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            out.push(a.clone());
        } else if id.scheme == "auth" {
            // Only providers that authenticate (digest, x509, sasl) count; ip ids are not
            // "authenticated".
            let authed: Vec<&Id> = ids.iter().filter(|i| is_authenticated_scheme(&i.scheme)).collect();
            if authed.is_empty() {
                return Err(ErrorCode::InvalidAcl);
            }
            for i in authed {
                out.push(Acl { perms: a.perms, id: i.clone() });
            }
        } else {
            if !explicit_id_valid(id) {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// `AuthenticationProvider.isAuthenticated`: the schemes an `auth` ACL expands to.
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "x509" | "sasl")
}

/// Whether an id other than world:anyone and auth is one ZooKeeper accepts in an ACL.
fn explicit_id_valid(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').count() == 2,
        "ip" => ip_acl_valid(&id.id),
        "x509" => x500_name_valid(&id.id),
        "sasl" => kerberos_name_valid(&id.id),
        _ => false,
    }
}

/// `new KerberosName(id)` does not throw: a name without '@' is always fine; one with '@' must
/// be `name[/host]@realm` with no further '/' or '@'.
pub fn kerberos_name_valid(id: &str) -> bool {
    let Some((principal, realm)) = id.split_once('@') else { return true };
    if realm.contains(['@', '/']) {
        return false;
    }
    let mut parts = principal.splitn(2, '/');
    let name = parts.next().unwrap_or("");
    !name.contains('@') && parts.next().is_none_or(|host| !host.contains(['/', '@']))
}

/// Whether `new X500Principal(id)` would accept `id` (RFC 2253 / 1779): RDNs separated by ','
/// or ';', attribute-value pairs within one by '+', each `type=value` where the type is a keyword
/// or a dotted OID (optionally `OID.`-prefixed). Backslash escapes and quoted values are honoured.
pub fn x500_name_valid(id: &str) -> bool {
    if id.trim().is_empty() {
        return true; // the empty name
    }
    let mut ava = String::new();
    let mut avas = Vec::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in id.chars() {
        if escaped {
            ava.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                ava.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                ava.push(c);
            }
            ',' | ';' | '+' if !quoted => avas.push(std::mem::take(&mut ava)),
            _ => ava.push(c),
        }
    }
    if quoted || escaped {
        return false;
    }
    avas.push(ava);
    avas.iter().all(|a| {
        let Some((ty, _value)) = a.split_once('=') else { return false };
        let ty = ty.trim();
        let ty = ty.strip_prefix("OID.").or_else(|| ty.strip_prefix("oid.")).unwrap_or(ty);
        let keyword = ty.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid = !ty.is_empty()
            && ty.split('.').count() >= 2
            && ty.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        keyword || oid
    })
}

/// `fixup_acl` for an ACL the caller owns: the common one (no duplicates, no `auth` id) comes
/// back as it is, with no copy; the result is always what `fixup_acl` gives.
pub fn fixup_acl_owned(acl: Vec<Acl>, ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let as_is = acl.iter().enumerate().all(|(i, a)| a.id.scheme != "auth" && !acl[..i].contains(a));
    if !as_is {
        return fixup_acl(&acl, ids);
    }
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let valid = |a: &Acl| (a.id.scheme == "world" && a.id.id == "anyone") || explicit_id_valid(&a.id);
    if !acl.iter().all(valid) {
        return Err(ErrorCode::InvalidAcl);
    }
    Ok(acl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // java -cp ... DigestAuthenticationProvider super:test → super:D/InIHSb7yEEbrWz8b9l71RjZJU=
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn ip_cidr() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("::1", "::1"));
        assert!(ip_acl_valid("192.168.0.0/24") && !ip_acl_valid("192.168.0.0/33") && !ip_acl_valid("nope"));
    }

    #[test]
    fn check_and_fixup() {
        let world = Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } };
        let alice = Id { scheme: "digest".into(), id: digest_id("alice:pw") };
        let only_alice = Acl { perms: 1, id: alice.clone() };
        assert_eq!(check_acl(std::slice::from_ref(&only_alice), 1, &[], None), Err(ErrorCode::NoAuth));
        assert_eq!(
            check_acl(std::slice::from_ref(&only_alice), 1, std::slice::from_ref(&alice), None),
            Ok(())
        );
        assert_eq!(
            check_acl(std::slice::from_ref(&only_alice), 2, std::slice::from_ref(&alice), None),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(check_acl(std::slice::from_ref(&world), 2, &[], None), Ok(()));
        let auth = Acl { perms: 31, id: Id { scheme: "auth".into(), id: "".into() } };
        assert_eq!(fixup_acl(std::slice::from_ref(&auth), &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[auth], std::slice::from_ref(&alice)).unwrap()[0].id, alice);
        assert_eq!(fixup_acl(&[], &[]), Err(ErrorCode::InvalidAcl));
        let bad = Acl { perms: 1, id: Id { scheme: "digest".into(), id: "nocolon".into() } };
        assert_eq!(fixup_acl(&[bad], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[world.clone(), world.clone()], &[]).unwrap().len(), 1);
    }

    #[test]
    fn x509_and_sasl_ids() {
        let dn = "CN=client,O=zkd test,C=US";
        let x509 = Id { scheme: "x509".into(), id: dn.into() };
        let acl = [Acl { perms: 1, id: x509.clone() }];
        assert_eq!(check_acl(&acl, 1, std::slice::from_ref(&x509), None), Ok(()));
        let other = Id { scheme: "x509".into(), id: "CN=other".into() };
        assert_eq!(check_acl(&acl, 1, &[other], None), Err(ErrorCode::NoAuth));
        let bob = Id { scheme: "sasl".into(), id: "bob".into() };
        let sasl_acl = [Acl { perms: 1, id: bob.clone() }];
        assert_eq!(check_acl(&sasl_acl, 1, std::slice::from_ref(&bob), None), Ok(()));
        let alice = Id { scheme: "sasl".into(), id: "alice".into() };
        assert_eq!(check_acl(&sasl_acl, 1, std::slice::from_ref(&alice), None), Err(ErrorCode::NoAuth));
        // SASLAuthenticationProvider.matches: the user named super matches any sasl id.
        let sup = Id { scheme: "sasl".into(), id: "super".into() };
        assert_eq!(check_acl(&sasl_acl, 1, &[sup], None), Ok(()));
        // auth expands to x509 and sasl ids too, never to ip.
        let auth = Acl { perms: 31, id: Id { scheme: "auth".into(), id: "".into() } };
        let ip = Id { scheme: "ip".into(), id: "127.0.0.1".into() };
        let fixed = fixup_acl(std::slice::from_ref(&auth), &[ip.clone(), x509.clone(), bob.clone()]).unwrap();
        assert_eq!(fixed.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), vec![x509, bob]);
        assert_eq!(fixup_acl(&[auth], &[ip]), Err(ErrorCode::InvalidAcl));
        // Validity: X500Principal and KerberosName.
        for ok in [dn, "cn=a+ou=b;o=c", "OID.2.5.4.3=x", "2.5.4.3=#0c0178", "CN=a\\,b", "CN=\"a,b\""] {
            assert!(x500_name_valid(ok), "{ok}");
        }
        for bad in ["client", "CN=a,", "=x", "CN=\"a", "1=x"] {
            assert!(!x500_name_valid(bad), "{bad}");
        }
        for ok in ["bob", "zookeeper/host@REALM", "bob@REALM"] {
            assert!(kerberos_name_valid(ok), "{ok}");
        }
        for bad in ["a@b@c", "a/b/c@R"] {
            assert!(!kerberos_name_valid(bad), "{bad}");
        }
        let bad = Acl { perms: 1, id: Id { scheme: "x509".into(), id: "not a dn".into() } };
        assert_eq!(fixup_acl(&[bad], &[]), Err(ErrorCode::InvalidAcl));
    }
}
