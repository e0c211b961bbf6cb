//! Identity-key TLS: a server's certificate is self-signed by its ed25519 identity
//! key, and a client checks that the key is the one it was told to expect. The
//! handshake's signature proves the server holds that key, so nobody else who can
//! answer on the address can pose as the satellite or a node.

use crate::{tls_host_port, TlsError};
use orbit_identity::{hex_encode, Identity, NodeId, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::transport::{Channel, Endpoint};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The name every identity certificate carries and every pinned client asks for; the
/// key, not the name, is what is checked.
const NAME: &str = "orbit";

/// The key a client expects its server to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this public key (a satellite's, from an access grant or a node's
    /// trusted-satellite list).
    Key(PublicKey),
    /// The key whose node id this is (a storage node's, from an order limit or its
    /// node record).
    Node(NodeId),
}

impl Expect {
    /// Whether `key` is the one expected.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Expect::Key(k) => k == key,
            Expect::Node(id) => key.id() == *id,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Key(k) => write!(f, "key {}", hex_encode(&k.0)),
            Expect::Node(id) => write!(f, "node id {id}"),
        }
    }
}

/// ring's provider, TLS 1.3's AES-128-GCM first: piece transfers are most of the
/// bytes, and AES-128 costs them less CPU than AES-256 at a strength TLS 1.3 requires
/// every implementation to offer. The server follows the client's order.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != cs::TLS13_AES_128_GCM_SHA256.suite());
    Arc::new(p)
}

/// A self-signed certificate for `identity`'s key, and the key, both PEM.
pub fn identity_cert(identity: &Identity) -> Result<(String, String), TlsError> {
    let der = identity.to_pkcs8_der();
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| TlsError::Bad(format!("identity key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .map_err(|e| TlsError::Bad(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, identity.id().to_string());
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Bad(format!("identity certificate: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a tonic server serves for `identity`.
pub fn identity_server(identity: &Identity) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
    let (cert, key) = identity_cert(identity)?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key)))
}

/// A rustls server configuration for `identity` (for HTTP servers), offering `alpn`.
fn identity_rustls(identity: &Identity, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, _) = identity_cert(identity)?;
    let cert = CertificateDer::from_pem_slice(cert.as_bytes())
        .map_err(|e| TlsError::Bad(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.to_pkcs8_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Bad(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The ed25519 key of a certificate, if that is what it holds.
fn cert_key(cert: &CertificateDer<'_>) -> Result<PublicKey, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| rustls::Error::General(format!("unparsable server certificate: {e}")))?;
    let spki = parsed.subject_public_key_info();
    let spki: &[u8] = spki.as_ref();
    // webpki hands out the SPKI's contents; accept it with or without the outer
    // SEQUENCE header.
    let body = spki.strip_prefix(&ED25519_SPKI_PREFIX[..2]).unwrap_or(spki);
    match body.strip_prefix(&ED25519_SPKI_PREFIX[2..]) {
        Some(key) if key.len() == 32 => Ok(PublicKey(key.try_into().expect("32 bytes"))),
        _ => Err(rustls::Error::General(
            "the server's certificate does not hold an ed25519 identity key".into(),
        )),
    }
}

/// Accepts a server exactly when its certificate holds the expected key and the
/// handshake is signed with it.
#[derive(Debug)]
struct PinnedVerifier {
    expect: Expect,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No validity period or name check: the pinned key is the whole trust, and a
        // node's self-signed certificate is made afresh at each start.
        let key = cert_key(end_entity)?;
        if self.expect.matches(&key) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server holds key {} (node id {}), not the expected {}",
                hex_encode(&key.0),
                key.id(),
                self.expect
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A rustls client configuration that accepts only a server holding `expect`,
/// offering `alpn`.
pub fn pinned_config(expect: Expect, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier { expect, provider }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The server name pinned clients send.
pub(crate) fn server_name() -> ServerName<'static> {
    ServerName::try_from(NAME).expect("a valid DNS name")
}

/// Connects TLS streams to a server that must hold the expected key, for tonic's
/// `Endpoint::connect_with_connector`.
#[derive(Clone)]
pub struct PinnedConnector {
    tls: tokio_rustls::TlsConnector,
}

impl PinnedConnector {
    /// A connector for servers holding `expect` (HTTP/2 only, as gRPC).
    pub fn new(expect: Expect) -> PinnedConnector {
        PinnedConnector {
            tls: tokio_rustls::TlsConnector::from(pinned_config(expect, &[b"h2"])),
        }
    }

    /// A connector for HTTP/1.1 servers holding `expect`.
    pub fn http1(expect: Expect) -> PinnedConnector {
        PinnedConnector {
            tls: tokio_rustls::TlsConnector::from(pinned_config(expect, &[b"http/1.1"])),
        }
    }

    /// Opens a TLS stream to `host:port`.
    pub async fn stream(
        &self,
        host_port: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(host_port).await?;
        // A gRPC answer is several small writes; Nagle would hold each back.
        tcp.set_nodelay(true)?;
        self.tls.connect(server_name(), tcp).await
    }
}

type ConnectFuture = Pin<
    Box<
        dyn Future<
                Output = std::io::Result<
                    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
                >,
            > + Send,
    >,
>;

impl tower::Service<http::Uri> for PinnedConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("no host in {uri}"),
                )
            })?;
            let stream = this.stream(authority.as_str()).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// A tonic endpoint for the TLS server at `url` (`https://host:port` or `host:port`),
/// to configure and then open with [`pinned_channel`].
pub fn pinned_endpoint(url: &str) -> Result<Endpoint, TlsError> {
    let host_port = tls_host_port(url)?;
    // The connector does TLS itself; tonic must see a plain URI or it refuses.
    Endpoint::from_shared(format!("http://{host_port}"))
        .map_err(|e| TlsError::Config(format!("bad URL {url}: {e}")))
}

/// Opens `endpoint` (from [`pinned_endpoint`]) to a server that must hold `expect`.
/// The error says why, through its whole chain (tonic's own just says "transport
/// error").
pub async fn pinned_channel(endpoint: Endpoint, expect: Expect) -> Result<Channel, String> {
    endpoint
        .connect_with_connector(PinnedConnector::new(expect))
        .await
        .map_err(|e| chain(&e))
}

/// An error with every source it wraps, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// TLS connections accepted on `listener` with `identity`'s certificate; a failed
/// handshake is logged and skipped.
pub fn accept_stream(
    listener: tokio::net::TcpListener,
    identity: &Identity,
    alpn: &[&[u8]],
) -> Result<
    impl futures::Stream<Item = tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    TlsError,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(identity_rustls(identity, alpn)?));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                // Nobody takes connections any more: stop listening.
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, out) = (acceptor.clone(), tx.clone());
            // Handshakes run beside the accept loop, so a slow client holds up no one.
            tokio::spawn(async move {
                let handshake = acceptor.accept(tcp);
                match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
                    Ok(Ok(tls)) => {
                        let _ = out.send(tls).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Serves `router` over TLS with `identity`'s certificate (HTTP/1.1 and HTTP/2) until
/// `stop` resolves. The certificate is made here, so a bad identity is an error before
/// anything is served; the returned future serves.
pub fn serve_axum(
    listener: tokio::net::TcpListener,
    identity: &Identity,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = ()> + Send + 'static, TlsError> {
    let incoming = accept_stream(listener, identity, &[b"h2", b"http/1.1"])?;
    Ok(serve_connections(incoming, router, stop))
}

async fn serve_connections(
    incoming: impl futures::Stream<Item = tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    router: axum::Router,
    stop: impl Future<Output = ()>,
) {
    use futures::StreamExt;
    let mut incoming = Box::pin(incoming);
    tokio::pin!(stop);
    loop {
        let tls = tokio::select! {
            _ = &mut stop => return,
            next = incoming.next() => match next {
                Some(t) => t,
                None => return,
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %e, "HTTPS connection ended with an error");
            }
        });
    }
}

/// curl's `--pinnedpubkey` value for a server holding `key`: `sha256//` and the
/// base64 SHA-256 of its SubjectPublicKeyInfo.
pub fn curl_pin(key: &PublicKey) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&key.0);
    format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_certificates_hold_the_identity_key() {
        let id = Identity::generate();
        let (cert, key) = identity_cert(&id).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(cert_key(&der).unwrap(), id.public());
        assert!(Expect::Node(id.id()).matches(&id.public()));
        assert!(!Expect::Key(Identity::generate().public()).matches(&id.public()));
    }

    async fn answer_once(
        listener: tokio::net::TcpListener,
        identity: Identity,
    ) -> tokio::task::JoinHandle<()> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut incoming = Box::pin(accept_stream(listener, &identity, &[b"h2"]).unwrap());
        tokio::spawn(async move {
            while let Some(mut s) = incoming.next().await {
                let _ = s.write_all(b"hi").await;
                let _ = s.shutdown().await;
            }
        })
    }

    #[tokio::test]
    async fn connects_only_to_the_expected_key() {
        use tokio::io::AsyncReadExt;
        let server = Identity::generate();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _task = answer_once(listener, server.clone()).await;

        let mut s = PinnedConnector::new(Expect::Node(server.id()))
            .stream(&addr)
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hi");

        let other = Identity::generate();
        let e = PinnedConnector::new(Expect::Key(other.public()))
            .stream(&addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the expected key"), "{e}");
    }

    #[test]
    fn curl_pins_are_sha256_of_the_spki() {
        let pin = curl_pin(&PublicKey([7; 32]));
        assert!(pin.starts_with("sha256//") && pin.len() == 8 + 44, "{pin}");
    }
}
