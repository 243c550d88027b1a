//! Key and trust stores as ZooKeeper reads them (`X509Util.loadKeyStore/loadTrustStore`): PEM
//! (certificates and a PKCS#8 key, encrypted with the store password when it has one) or
//! PKCS#12. Errors are sentences naming the file and the likely cause; passwords never appear.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::security::{Store, StoreType};
use crate::config::Secret;

/// Largest store file read (a store is a few kilobytes; this bounds a wrong path to /dev/zero).
pub const STORE_MAX_BYTES: u64 = 16 << 20;

/// The server's identity: its chain (leaf first) and key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads a store file, bounded.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut data = Vec::new();
    f.take(STORE_MAX_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if data.len() as u64 > STORE_MAX_BYTES {
        return Err(format!(
            "{} is larger than {STORE_MAX_BYTES} bytes: not a key or trust store",
            path.display()
        ));
    }
    Ok(data)
}

/// The store's password: `passwordPath` (the file's content, as `SecretUtils.readSecret` reads
/// it, without a trailing newline) wins over `password`.
pub fn password(store: &Store) -> Result<Secret, String> {
    match &store.password_path {
        None => Ok(store.password.clone()),
        Some(p) => {
            let data = read_bounded(Path::new(p))?;
            let text = String::from_utf8(data).map_err(|_| format!("{p}: the password file is not UTF-8"))?;
            Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
        }
    }
}

pub fn load_identity(which: &str, store: &Store) -> Result<Identity, String> {
    let path = Path::new(&store.location);
    let data = read_bounded(path)?;
    let pw = password(store)?;
    let named = |e: String| format!("ssl.{which} {}: {e}", path.display());
    match store.store_type {
        StoreType::Pem => pem_identity(&data, &pw).map_err(named),
        StoreType::Pkcs12 => p12_identity(&data, &pw).map_err(named),
    }
}

pub fn load_trust(which: &str, store: &Store) -> Result<Vec<CertificateDer<'static>>, String> {
    let path = Path::new(&store.location);
    let data = read_bounded(path)?;
    let pw = password(store)?;
    let certs = match store.store_type {
        StoreType::Pem => pem_certs(&data),
        StoreType::Pkcs12 => p12_trusted(&data, &pw),
    }
    .map_err(|e| format!("ssl.{which} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ssl.{which} {}: no certificates in it", path.display()));
    }
    Ok(certs)
}

fn pem_certs(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file ({e:?})"))
}

fn pem_identity(data: &[u8], pw: &Secret) -> Result<Identity, String> {
    let chain = pem_certs(data)?;
    if chain.is_empty() {
        return Err("no CERTIFICATE in it (a PEM key store holds the certificate chain and the key)".into());
    }
    let text = String::from_utf8_lossy(data);
    let key = if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let der = pem_block(&text, "ENCRYPTED PRIVATE KEY")?;
        let doc = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| format!("cannot parse the encrypted private key: {e}"))?;
        let plain = doc
            .decrypt(pw.expose().as_bytes())
            .map_err(|_| "cannot decrypt the private key: wrong ssl.keyStore.password?".to_string())?;
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec()))
    } else {
        PrivateKeyDer::from_pem_slice(data).map_err(|e| format!("no usable PRIVATE KEY in it ({e:?})"))?
    };
    Ok(Identity { chain, key })
}

/// The DER bytes of the first PEM block labelled `label`.
fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| format!("no {label} block"))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| format!("{label} block not closed"))? + start;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("{label}: {e}"))
}

fn p12(data: &[u8], pw: &Secret) -> Result<p12_keystore::KeyStore, String> {
    p12_keystore::KeyStore::from_pkcs12(data, pw.expose())
        .map_err(|e| format!("cannot open the PKCS12 store (wrong password, or not PKCS12?): {e}"))
}

fn p12_identity(data: &[u8], pw: &Secret) -> Result<Identity, String> {
    let ks = p12(data, pw)?;
    let (_, chain) = ks.private_key_chain().ok_or("no private key entry in it")?;
    let certs: Vec<CertificateDer<'static>> =
        chain.chain().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    if certs.is_empty() {
        return Err("its private key entry has no certificate".into());
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().to_vec()));
    Ok(Identity { chain: certs, key })
}

/// Trusted certificate entries (keytool's); a store without any (openssl's `-nokeys`) gives its
/// certificates.
fn p12_trusted(data: &[u8], pw: &Secret) -> Result<Vec<CertificateDer<'static>>, String> {
    let ks = p12(data, pw)?;
    let mut out = Vec::new();
    let mut chains = Vec::new();
    for (_, e) in ks.entries() {
        match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => {
                out.push(CertificateDer::from(c.as_der().to_vec()))
            }
            p12_keystore::KeyStoreEntry::PrivateKeyChain(k) => {
                chains.extend(k.chain().iter().map(|c| CertificateDer::from(c.as_der().to_vec())))
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out = chains;
    }
    Ok(out)
}
