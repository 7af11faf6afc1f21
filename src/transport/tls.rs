//! Mutual TLS between nodes: both sides present a certificate signed by the cluster CA and both
//! verify the other's against it. Node names live in the certificates (`weft ca issue --node`),
//! so the name a peer claims in gossip is checked against the name its certificate proves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// ALPN of node-to-node QUIC; a version bump changes it so mismatched nodes fail the handshake
/// with a clear reason instead of misreading each other.
pub const ALPN: &[u8] = b"weft/1";

/// The server name a client asks for when it dials a seed whose node name it does not know yet:
/// the chain is verified against the CA and the name is then read from the certificate.
pub const ANY_NODE: &str = "any.weft.invalid";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(String),
}

/// Where the cluster CA and this node's certificate and key are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn pem_err(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem { path: path.to_path_buf(), message: e.to_string() }
}

/// Both halves of a node's TLS: what it serves and what it dials with.
pub struct Configs {
    pub server: rustls::ServerConfig,
    pub client: rustls::ClientConfig,
    /// The node name in our own certificate.
    pub name: String,
    /// The node as its certificate names it, grants included (`crate::authz`).
    pub identity: crate::authz::Identity,
    /// Secret for QUIC stateless resets, derived from the node's private key so it survives a
    /// restart: a node restarted at the same address can then reset the connections peers still
    /// hold to its previous process, instead of them sending into the void until the idle timeout.
    pub reset_secret: [u8; 32],
    /// When this node's certificate stops being valid (Unix seconds), if it says.
    pub expires: Option<u64>,
}

/// What the files hold: the cluster CA, this node's chain and key.
struct Material {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn material(files: &TlsFiles) -> Result<Material, TlsError> {
    let ca_pem = read(&files.ca)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(cert.map_err(pem_err(&files.ca))?).map_err(TlsError::Rustls)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem { path: files.ca.clone(), message: "no certificate in the file".into() });
    }
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>().map_err(pem_err(&files.cert))?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: files.cert.clone(), message: "no certificate in the file".into() });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(pem_err(&files.key))?;
    Ok(Material { roots: Arc::new(roots), chain, key })
}

/// A server config presenting this node's certificate; `verifier` decides what clients show.
fn server_config(files: &TlsFiles, m: &Material, verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>, alpn: &[u8]) -> Result<rustls::ServerConfig, TlsError> {
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Pem { path: files.key.clone(), message: format!("is not the key of the certificate in {}", files.cert.display()) },
            e => TlsError::Rustls(e),
        })?;
    server.alpn_protocols = vec![alpn.to_vec()];
    server.max_early_data_size = 0;
    Ok(server)
}

/// A client config that shows this node's certificate and accepts any node of the cluster CA
/// (by name when the dialer knows it, see [`NodeVerifier`]).
fn client_config(m: &Material, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(m.roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeVerifier { inner: server_verifier }))
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())?;
    client.alpn_protocols = vec![alpn.to_vec()];
    Ok(client)
}

/// Loads the files and builds both configs; called at start and on every reload.
pub fn load(files: &TlsFiles) -> Result<Configs, TlsError> {
    let m = material(files)?;
    let leaf = &m.chain[0];
    let expires = not_after(leaf);
    let name = node_name(leaf).ok_or_else(|| TlsError::Pem { path: files.cert.clone(), message: "the certificate names no node (issue it with `weft ca issue --node NAME`)".into() })?;
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, m.key.secret_der());
    let mut reset_secret = [0u8; 32];
    reset_secret.copy_from_slice(ring::hmac::sign(&derive, b"weft quic stateless reset v1").as_ref());
    let client_verifier = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let server = server_config(files, &m, client_verifier, ALPN)?;
    let client = client_config(&m, ALPN)?;
    let identity = identity(leaf).unwrap_or_else(|| crate::authz::Identity::cluster_wide(&name));
    Ok(Configs { server, client, name, reset_secret, expires, identity })
}

/// The admin API's HTTPS side (ALPN `http/1.1`): it presents the node's certificate and asks the
/// caller for one. A caller may show none (it then needs the bearer token, and is answered 401
/// without it), but one it shows must chain to the cluster CA, or the handshake is refused.
pub fn admin_server(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let m = material(files)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    server_config(files, &m, verifier, ADMIN_ALPN)
}

/// What the CLI dials a node's admin API with: the node's own certificate as the client's, and
/// any node of the cluster CA accepted as the server (dial with [`ANY_NODE`]).
pub fn admin_client(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    client_config(&material(files)?, ADMIN_ALPN)
}

/// ALPN of the admin API over TLS: plain HTTP/1.1, as curl and browsers offer it.
pub const ADMIN_ALPN: &[u8] = b"http/1.1";

/// The certificate must be this node's: the cluster knows nodes by the names their certificates
/// prove.
pub fn expect_node(files: &TlsFiles, cert_name: &str, node_name: &str) -> Result<(), TlsError> {
    if cert_name == node_name {
        return Ok(());
    }
    Err(TlsError::Pem {
        path: files.cert.clone(),
        message: format!("is issued to node `{cert_name}` but this node is `{node_name}` (set [node] name, or issue a certificate with `weft ca issue --node {node_name}`)"),
    })
}

/// What starting a node named `node_name` with these files would run into, for `weft validate`:
/// each file that cannot be read, else what [`load`] and [`expect_node`] refuse — the functions
/// `weft run` uses, so both say the same.
pub fn problems(files: &TlsFiles, node_name: &str) -> Vec<TlsError> {
    let unreadable: Vec<TlsError> = [&files.ca, &files.cert, &files.key].into_iter().filter_map(|p| read(p).err()).collect();
    if !unreadable.is_empty() {
        return unreadable;
    }
    load(files).and_then(|c| expect_node(files, &c.name, node_name)).err().into_iter().collect()
}

/// The node name a certificate was issued for: its common name (also its first DNS SAN).
pub fn node_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| cn.to_string())
}

/// Who a certificate says its node is: the name, and the grants among its URI SANs.
pub fn identity(cert: &CertificateDer<'_>) -> Option<crate::authz::Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = node_name(cert)?;
    let sans = parsed.subject_alternative_name().ok().flatten();
    let uris = sans.iter().flat_map(|s| s.value.general_names.iter()).filter_map(|g| match g {
        x509_parser::extensions::GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    Some(crate::authz::Identity::from_grants(&name, uris))
}

/// The identity of an authenticated QUIC peer.
pub fn peer_identity(conn: &quinn::Connection) -> Option<crate::authz::Identity> {
    let certs = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    identity(certs.first()?)
}

/// A certificate's notAfter, in Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    u64::try_from(parsed.validity().not_after.timestamp()).ok()
}

/// The node name of an authenticated QUIC peer.
pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let certs = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_name(certs.first()?)
}

/// Verifies the chain against the cluster CA like any web PKI verifier, and the name too when
/// the dialer knows which node it expects; a seed dialed by address ([`ANY_NODE`]) is held to
/// the name in its own certificate, which is then what the gossip layer trusts.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let expected = match server_name {
            ServerName::DnsName(d) if d.as_ref() == ANY_NODE => {
                let name = node_name(end_entity).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
                ServerName::try_from(name).map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?
            }
            other => other.to_owned(),
        };
        self.inner.verify_server_cert(end_entity, intermediates, &expected, ocsp, now)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
