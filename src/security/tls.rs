//! TLS with rustls (ring provider) for every listener and for the native client.
//!
//! Server side: [`TlsMode`] as RocketMQ's `tls.server.mode` — `disabled`, `permissive` (TLS and
//! plaintext on one port: a TLS connection starts with a handshake record, byte 0x16, which as the
//! first byte of a remoting frame would announce a frame of at least 352 MiB, past any frame limit,
//! so one peeked byte tells them apart) and `enforcing` (TLS only: a plaintext client's bytes fail
//! the handshake and the connection is closed without an answer). [`ServerTls`] holds the
//! certificate, key and optional client CA (`--tls-client-ca`: clients must present a certificate it
//! signed) and reloads them when the files change (checked at most once a second, on accept); a
//! reload that fails keeps the previous certificate and logs why. One `ServerTls` per executor.
//!
//! Client side: [`client_config`] verifies the server against `--tls-ca` when given; without one
//! it encrypts without checking the server's certificate, as RocketMQ clients do by default
//! (`tls.test.mode.enable`), and says so in the log. [`Stream`] is a plaintext or TLS socket on the
//! runtime, for the listeners and the async client; the blocking client has its own (`client::wire`).

use crate::rt::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;
/// How often certificate files are looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Whether a listener speaks TLS (RocketMQ's `tls.server.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Disabled,
    Permissive,
    Enforcing,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disabled" => Some(TlsMode::Disabled),
            "permissive" => Some(TlsMode::Permissive),
            "enforcing" => Some(TlsMode::Enforcing),
            _ => None,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?.collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(store)
}

/// The files a listener's TLS is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these.
    pub client_ca: Option<PathBuf>,
}

/// A rustls server configuration from `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| format!("{} and {} do not make a certificate: {e}", files.cert.display(), files.key.display()))?;
    Ok(Arc::new(cfg))
}

type Stamps = Vec<Option<std::time::SystemTime>>;

fn stamps(files: &TlsFiles) -> Stamps {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut s = vec![m(&files.cert), m(&files.key)];
    s.extend(files.client_ca.as_deref().map(m));
    s
}

/// One executor's TLS for its listeners: the mode and the configuration in force.
pub struct ServerTls {
    pub mode: TlsMode,
    files: TlsFiles,
    current: RefCell<Arc<rustls::ServerConfig>>,
    seen: RefCell<Stamps>,
    checked: Cell<Instant>,
}

impl ServerTls {
    /// `None` when the mode is `disabled`; an error when the files do not make a certificate.
    pub fn new(mode: TlsMode, files: Option<&TlsFiles>) -> Result<Option<ServerTls>, String> {
        if mode == TlsMode::Disabled {
            return Ok(None);
        }
        let files = files.ok_or("TLS needs --tls-cert and --tls-key")?;
        Ok(Some(ServerTls {
            mode,
            current: RefCell::new(server_config(files)?),
            seen: RefCell::new(stamps(files)),
            files: files.clone(),
            checked: Cell::new(Instant::now()),
        }))
    }

    /// The configuration for a new connection, reloaded first if the files changed.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        if self.checked.get().elapsed() >= RELOAD_CHECK {
            self.checked.set(Instant::now());
            let now = stamps(&self.files);
            if now != *self.seen.borrow() {
                *self.seen.borrow_mut() = now;
                match server_config(&self.files) {
                    Ok(c) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                        *self.current.borrow_mut() = c;
                    }
                    Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays"),
                }
            }
        }
        self.current.borrow().clone()
    }

    /// Whether a connection whose first byte is `first` is to be served with TLS.
    pub fn wants_tls(&self, first: Option<u8>) -> bool {
        match self.mode {
            TlsMode::Disabled => false,
            TlsMode::Enforcing => true,
            TlsMode::Permissive => first == Some(TLS_HANDSHAKE_BYTE),
        }
    }

    /// Completes the server side of the handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let acceptor = futures_rustls::TlsAcceptor::from(self.config());
        let tls = acceptor.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(futures_rustls::TlsStream::Server(tls))))
    }
}

/// Accepts any server certificate (no `--tls-ca`): the handshake's signatures are still checked,
/// so the session is encrypted to whoever holds the presented certificate's key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a client's TLS is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTlsFiles {
    /// Verify servers against these CAs; without, any server certificate is accepted.
    pub ca: Option<PathBuf>,
    /// A client certificate and key, for servers that ask for one.
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

/// A rustls client configuration.
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.ca {
        Some(ca) => builder.with_root_certificates(roots(ca)?),
        None => {
            tracing::warn!("TLS without a CA (--tls-ca): the server's certificate is not verified");
            builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider())))
        }
    };
    let cfg = match &files.cert_key {
        Some((c, k)) => builder.with_client_auth_cert(certs(c)?, key(k)?).map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The name a client checks the server certificate against: the host of `host:port`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a TLS server name: {e}"))
}

/// Connects the client side of TLS over `tcp` to `addr`.
pub async fn connect(cfg: &Arc<rustls::ClientConfig>, addr: &str, tcp: TcpStream) -> std::io::Result<Stream> {
    let name = server_name(addr).map_err(std::io::Error::other)?;
    let tls = futures_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(futures_rustls::TlsStream::Client(tls))))
}

/// A socket on the runtime, plaintext or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket of a plaintext stream, for writes that bypass the stream (net/gather.rs); `None`
    /// under TLS, where every byte goes through the session.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Plain(s) => Some(s.as_raw_fd()),
            Stream::Tls(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! Certificates for tests: a CA and a server/client certificate it signed for 127.0.0.1.
    use std::path::{Path, PathBuf};

    pub struct TestPki {
        pub ca: PathBuf,
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    pub fn write_pki(dir: &Path) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
        let pki = TestPki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&pki.ca, ca.pem()).expect("write");
        std::fs::write(&pki.cert, cert.pem()).expect("write");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write");
        pki
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_build_from_pem_files_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testing::write_pki(dir.path());
        let files = TlsFiles { cert: pki.cert.clone(), key: pki.key.clone(), client_ca: Some(pki.ca.clone()) };
        assert!(server_config(&files).is_ok());
        assert!(client_config(&ClientTlsFiles { ca: Some(pki.ca.clone()), cert_key: None }).is_ok());
        let swapped = TlsFiles { cert: pki.key.clone(), key: pki.cert.clone(), client_ca: None };
        assert!(server_config(&swapped).unwrap_err().contains("no certificate"));
        assert!(ServerTls::new(TlsMode::Enforcing, None).is_err());
        assert!(ServerTls::new(TlsMode::Disabled, None).unwrap().is_none());
    }

    #[test]
    fn permissive_mode_sniffs_the_handshake_byte() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testing::write_pki(dir.path());
        let files = TlsFiles { cert: pki.cert, key: pki.key, client_ca: None };
        let p = ServerTls::new(TlsMode::Permissive, Some(&files)).unwrap().unwrap();
        assert!(p.wants_tls(Some(0x16)) && !p.wants_tls(Some(0)) && !p.wants_tls(None));
        let e = ServerTls::new(TlsMode::Enforcing, Some(&files)).unwrap().unwrap();
        assert!(e.wants_tls(Some(0)));
        assert!(server_name("127.0.0.1:10911").is_ok() && server_name("broker-a:10911").is_ok());
    }
}
