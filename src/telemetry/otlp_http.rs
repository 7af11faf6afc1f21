//! The HTTP client OTLP's http/protobuf transport sends with when the collector's endpoint is
//! `https://`: hyper over tokio-rustls with ring, trusting `[telemetry] ca_file` (or the system's
//! CA bundle). The SDK's own https clients pull in aws-lc (reqwest's rustls) or OpenSSL, which weft
//! does not link; its plain-http client (blocking reqwest) stays in use for `http://`.
//!
//! The SDK's reader thread polls `send_bytes` from its own executor, which has no tokio reactor:
//! each export runs on the exporter's tokio runtime (`Handle::spawn`) and is awaited through its
//! `JoinHandle`. One connection per export: at one export every few seconds, keeping a connection
//! alive would save a handshake and cost a task and its error handling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A collector's answer is a small protobuf; anything larger is not one.
const MAX_RESPONSE: usize = 4 << 20;
/// Where Debian (and most distributions) keep the system's CA bundle.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug)]
pub struct HttpsClient {
    runtime: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl HttpsClient {
    /// `ca_file`: the PEM the collector's certificate must chain to (else the system bundle).
    pub fn new(runtime: tokio::runtime::Handle, ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<HttpsClient, String> {
        let path = ca_file.unwrap_or(std::path::Path::new(SYSTEM_CAS));
        let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("CA file {} holds no certificate", path.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsClient { runtime, tls: Arc::new(tls), timeout })
    }
}

#[async_trait::async_trait]
impl HttpClient for HttpsClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (tls, timeout) = (self.tls.clone(), self.timeout);
        let export = async move { tokio::time::timeout(timeout, send(tls, request)).await.map_err(|_| HttpError::from(format!("no answer within {timeout:?}")))? };
        self.runtime.spawn(export).await?
    }
}

async fn send(tls: Arc<rustls::ClientConfig>, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or("OTLP endpoint without a host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.clone())?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Origin form and a Host field, as a server expects from a client talking to it directly.
    let (mut parts, body) = request.into_parts();
    parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host);
    parts.headers.insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
    let response = sender.send_request(Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
