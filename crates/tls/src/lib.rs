//! TLS for orbit's connections, two ways:
//!
//! - **Certificate files, as etcd** ([`StoreTls`]): the store's client and peer ports
//!   serve certificates an operator's CA signed and, with `client_cert_auth`, accept
//!   only clients whose certificates that CA signed. Members and replicas use the same
//!   files as clients.
//! - **Identity keys, pinned** ([`identity_server`], [`pinned_channel`]): the satellite
//!   API, the piecestore and the private API serve a self-signed certificate made from
//!   the peer's ed25519 identity key, and a client accepts the connection only if that
//!   key is the one it expects — the satellite key in an access grant, the node id in
//!   an order limit. No CA is involved: the key is the trust, as with Storj's peer
//!   identities.

mod files;
mod pinned;

pub use files::{StoreTls, TlsFiles};
pub use pinned::{
    accept_stream, chain, curl_pin, identity_cert, identity_server, pinned_channel, pinned_config,
    pinned_endpoint, serve_axum, Expect, PinnedConnector,
};

/// The subject common name of a DER certificate (as etcd, the user a client
/// certificate stands for when the store checks client certificates); `None` when it
/// has none or does not parse.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        err: std::io::Error,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Config(String),
    /// A certificate or key is not usable.
    #[error("{0}")]
    Bad(String),
}

/// Strips `https://` (or nothing, for `host:port`) from a URL of a TLS server; a
/// `http://` URL is refused, since the server speaks TLS only.
pub fn tls_host_port(url: &str) -> Result<&str, TlsError> {
    if url.starts_with("http://") {
        return Err(TlsError::Config(format!(
            "{url}: orbit's satellite API, piecestore and private API speak TLS only; use https://"
        )));
    }
    let rest = url.strip_prefix("https://").unwrap_or(url);
    Ok(rest.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls() {
        assert_eq!(
            tls_host_port("https://127.0.0.1:7/").unwrap(),
            "127.0.0.1:7"
        );
        assert_eq!(tls_host_port("127.0.0.1:7").unwrap(), "127.0.0.1:7");
        let e = tls_host_port("http://127.0.0.1:7").unwrap_err().to_string();
        assert!(e.contains("use https://"), "{e}");
    }
}
