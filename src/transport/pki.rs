//! The cluster's own certificate authority: `weft ca init` makes it, `weft ca issue` signs node
//! certificates with it. Every connection between nodes will be authenticated against this CA
//! (mutual TLS), so a host without a CA-signed certificate cannot join, read or send.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, string::Ia5String,
};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} already exists; pass --force to replace the CA (every node certificate must then be reissued)")]
    Exists { path: PathBuf },
    #[error("cannot read {path}: {source} (run `weft ca init` first?)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{what}: {source}")]
    Crypto { what: String, source: rcgen::Error },
    #[error("node name `{0}` must be 1-64 characters of letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("{what} `{name}` must be 1-64 characters of letters, digits, '-', '_' or '.'")]
    BadGrant { what: &'static str, name: String },
}

fn crypto(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Crypto { what: what.to_string(), source }
}

/// Writes via a temp file and rename so a crash never leaves half a key; keys are 0600 from
/// their first byte.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(err)?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(err)?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_path_buf(), source })
}

/// Creates the cluster CA in `dir`; returns the certificate's path.
pub fn ca_init(dir: &Path, cluster: &str, force: bool) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert_path, &key_path] {
        if p.exists() && !force {
            return Err(PkiError::Exists { path: p.clone() });
        }
    }
    let key = KeyPair::generate().map_err(crypto("generating the CA key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(crypto("CA parameters"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("weft cluster CA {cluster}"));
    dn.push(DnType::OrganizationName, "weft");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key).map_err(crypto("signing the CA certificate"))?;
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &cert.pem(), 0o644)?;
    Ok(cert_path)
}

/// Sets validity from an hour ago (clock skew between hosts) for `days`.
fn validity(params: &mut CertificateParams, days: u32) {
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = params.not_before + time::Duration::days(days as i64);
}

/// The files `ca_issue` wrote.
#[derive(Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate copied beside them, when `out_dir` is not the CA's directory: the
    /// node's whole bundle (`[tls] ca`, `cert`, `key`) is then one directory to ship.
    pub ca: Option<PathBuf>,
}

/// What a certificate grants its node besides its name (`crate::authz`): the namespaces it
/// belongs to (none: every namespace) and its client groups.
#[derive(Debug, Default, Clone)]
pub struct Grants {
    pub namespaces: Vec<String>,
    pub groups: Vec<String>,
}

fn good_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The grants as URI SANs (`weft://namespace/NAME`, `weft://group/NAME`).
fn grant_sans(grants: &Grants) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::new();
    for (what, prefix, names) in [("namespace", crate::authz::NAMESPACE_URI, &grants.namespaces), ("group", crate::authz::GROUP_URI, &grants.groups)] {
        for name in names {
            if !good_name(name) {
                return Err(PkiError::BadGrant { what, name: name.clone() });
            }
            let uri = Ia5String::try_from(format!("{prefix}{name}")).map_err(crypto("a grant URI"))?;
            out.push(SanType::URI(uri));
        }
    }
    Ok(out)
}

/// Signs a certificate for node `name` (usable as TLS server and client), valid `days`, with the
/// node name and `extra_sans` (DNS names or IP addresses) as subject alternative names, and the
/// `grants` as URI SANs.
pub fn ca_issue(ca_dir: &Path, out_dir: &Path, name: &str, extra_sans: &[String], grants: &Grants, days: u32) -> Result<Issued, PkiError> {
    if !good_name(name) {
        return Err(PkiError::BadName(name.to_string()));
    }
    let grant_uris = grant_sans(grants)?;
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join(CA_KEY))?).map_err(crypto("reading the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_dir.join(CA_CERT))?, ca_key).map_err(crypto("reading the CA certificate"))?;
    let mut sans = vec![name.to_string()];
    sans.extend(extra_sans.iter().cloned());
    let mut params = CertificateParams::new(sans).map_err(crypto("node certificate parameters"))?;
    params.subject_alt_names.extend(grant_uris);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, days.max(1));
    let key = KeyPair::generate().map_err(crypto("generating the node key"))?;
    let cert = params.signed_by(&key, &issuer).map_err(crypto("signing the node certificate"))?;
    let same_dir = fs::canonicalize(out_dir).ok().is_some_and(|o| fs::canonicalize(ca_dir).ok() == Some(o));
    let issued = Issued { cert: out_dir.join(format!("{name}.pem")), key: out_dir.join(format!("{name}-key.pem")), ca: (!same_dir).then(|| out_dir.join(CA_CERT)) };
    write_file(&issued.key, &key.serialize_pem(), 0o600)?;
    write_file(&issued.cert, &cert.pem(), 0o644)?;
    if let Some(ca) = &issued.ca {
        write_file(ca, &read(&ca_dir.join(CA_CERT))?, 0o644)?;
    }
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_clobber_and_issue_signs() {
        let dir = std::env::temp_dir().join(format!("weft-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        ca_init(&dir, "test", false).unwrap();
        assert!(matches!(ca_init(&dir, "test", false), Err(PkiError::Exists { .. })));
        let mode = fs::metadata(dir.join(CA_KEY)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let issued = ca_issue(&dir, &dir, "node-a", &["10.0.0.7".into()], &Grants::default(), 30).unwrap();
        assert!(read(&issued.cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(matches!(ca_issue(&dir, &dir, "bad name", &[], &Grants::default(), 30), Err(PkiError::BadName(_))));
        let bad = Grants { namespaces: vec!["a/b".into()], groups: vec![] };
        assert!(matches!(ca_issue(&dir, &dir, "node-b", &[], &bad, 30), Err(PkiError::BadGrant { what: "namespace", .. })));
        // The grants come back out of the certificate as the node's identity.
        let grants = Grants { namespaces: vec!["shop".into(), "pay".into()], groups: vec!["billing".into()] };
        let issued = ca_issue(&dir, &dir, "node-c", &[], &grants, 30).unwrap();
        let pem = read(&issued.cert).unwrap();
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let id = super::super::tls::identity(&der).unwrap();
        assert_eq!(id.to_string(), "node node-c (namespaces pay, shop; groups billing)");
        fs::remove_dir_all(&dir).unwrap();
    }
}
