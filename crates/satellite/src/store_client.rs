//! The store flags every administrative command shares: endpoints, etcdctl's
//! `--cacert`, `--cert` and `--key` for `https://` endpoints, and `--user` for a store
//! with auth enabled.

use clap::Args;
use orbit_kv::{Credentials, RemoteKv};
use std::path::PathBuf;

/// A client's TLS files, as etcdctl's flags.
#[derive(Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// CA certificate that verifies the members of `https://` endpoints.
    #[arg(long, env = "ORBIT_STORE_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate, for members that check clients (`client_cert_auth`).
    #[arg(long, env = "ORBIT_STORE_CERT")]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, env = "ORBIT_STORE_KEY")]
    pub key: Option<PathBuf>,
    /// Store user for a store with auth enabled, as etcdctl's `--user name[:password]`
    /// (without `:password`, the password is ORBIT_STORE_PASSWORD).
    #[arg(long, env = "ORBIT_STORE_USER")]
    pub user: Option<String>,
}

impl TlsArgs {
    /// The tonic client configuration; `None` without files.
    pub fn client_config(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        Ok(orbit_tls::TlsFiles {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
        }
        .client_config()?)
    }

    /// The store user and password given, if any.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        Ok(self
            .user
            .as_deref()
            .map(|u| Credentials::parse(u, std::env::var("ORBIT_STORE_PASSWORD").ok()))
            .transpose()?)
    }

    /// A client of `endpoints` with these files, as the user, if one is given.
    pub async fn connect(&self, endpoints: &[String]) -> anyhow::Result<RemoteKv> {
        Ok(RemoteKv::connect_as(endpoints, self.client_config()?, self.credentials()?).await?)
    }
}

/// A member's TLS flags, named as etcd's.
#[derive(Args, Clone, Debug, Default)]
pub struct MemberTlsArgs {
    /// Certificate the client port serves (PEM); the client URL must be https://.
    #[arg(long, env = "ORBIT_STORE_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long, env = "ORBIT_STORE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA that signs client certificates.
    #[arg(long, env = "ORBIT_STORE_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Accept only clients with a certificate the trusted CA signed.
    #[arg(long, env = "ORBIT_STORE_CLIENT_CERT_AUTH")]
    pub client_cert_auth: bool,
    /// Certificate the peer port serves and presents to other members; peer URLs
    /// must be https://.
    #[arg(long, env = "ORBIT_STORE_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long, env = "ORBIT_STORE_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA that signs the members' peer certificates.
    #[arg(long, env = "ORBIT_STORE_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Accept only peers with a certificate the peer CA signed.
    #[arg(long, env = "ORBIT_STORE_PEER_CLIENT_CERT_AUTH")]
    pub peer_client_cert_auth: bool,
}

impl MemberTlsArgs {
    /// The settings these flags give.
    pub fn settings(&self) -> orbit_tls::StoreTls {
        orbit_tls::StoreTls {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            peer_cert_file: self.peer_cert_file.clone(),
            peer_key_file: self.peer_key_file.clone(),
            peer_trusted_ca_file: self.peer_trusted_ca_file.clone(),
            peer_client_cert_auth: self.peer_client_cert_auth,
        }
    }
}

/// Where the store is and how to reach it.
#[derive(Args, Clone, Debug)]
pub struct StoreClient {
    /// Client URLs of the store (comma-separated).
    #[arg(long, env = "ORBIT_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl StoreClient {
    /// A client of the store.
    pub async fn connect(&self) -> anyhow::Result<RemoteKv> {
        self.tls.connect(&self.endpoints).await
    }
}
