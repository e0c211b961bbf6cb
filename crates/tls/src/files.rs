//! Certificate files, with etcd's flag names: what the store's ports serve and what
//! its clients present.

use crate::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The TLS settings of a store member, named as etcd's flags (`--cert-file` is
/// `cert_file`). The client port's files also make the replica's own client
/// certificate, so that one certificate per replica serves both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTls {
    /// Certificate the client port serves (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA that signs client certificates; also the CA a replica trusts for members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Accept only clients with a certificate the trusted CA signed.
    #[serde(default)]
    pub client_cert_auth: bool,
    /// Certificate the peer port serves and presents to other members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_cert_file: Option<PathBuf>,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key_file: Option<PathBuf>,
    /// CA that signs the members' peer certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Accept only peers with a certificate the peer CA signed.
    #[serde(default)]
    pub peer_client_cert_auth: bool,
}

impl StoreTls {
    /// Checks that the files fit together and can be read, saying what to fix.
    pub fn validate(&self) -> Result<(), TlsError> {
        pair(&self.cert_file, &self.key_file, "cert_file", "key_file")?;
        pair(
            &self.peer_cert_file,
            &self.peer_key_file,
            "peer_cert_file",
            "peer_key_file",
        )?;
        if self.client_cert_auth && (self.trusted_ca_file.is_none() || self.cert_file.is_none()) {
            return Err(TlsError::Config(
                "client_cert_auth needs cert_file, key_file and trusted_ca_file".into(),
            ));
        }
        if self.peer_client_cert_auth && self.peer_cert_file.is_none() {
            return Err(TlsError::Config(
                "peer_client_cert_auth needs peer_cert_file and peer_key_file".into(),
            ));
        }
        if self.peer_cert_file.is_some() && self.peer_trusted_ca_file.is_none() {
            return Err(TlsError::Config(
                "peer_cert_file needs peer_trusted_ca_file: members verify each other with it"
                    .into(),
            ));
        }
        self.client_server()?;
        self.peer_server()?;
        self.peer_client()?;
        self.client().client_config()?;
        Ok(())
    }

    /// Whether the client port serves TLS.
    pub fn client_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether the peer port serves TLS.
    pub fn peer_tls(&self) -> bool {
        self.peer_cert_file.is_some()
    }

    /// What the client port serves; `None`: plain gRPC.
    pub fn client_server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        server(
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )
    }

    /// What the peer port serves; `None`: plain gRPC.
    pub fn peer_server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        server(
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )
    }

    /// How a member connects to the others' peer ports: their CA, its peer
    /// certificate; `None` when peers speak plain gRPC.
    pub fn peer_client(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        TlsFiles {
            ca_file: self.peer_trusted_ca_file.clone(),
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
        }
        .client_config()
    }

    /// How a replica connects to the client ports as a client: the trusted CA and the
    /// client-port certificate.
    pub fn client(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.trusted_ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

/// A client's TLS files, as etcdctl's `--cacert`, `--cert` and `--key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA that signed the servers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This client's certificate, for servers that check clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is given.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some()
    }

    /// The tonic client configuration; `None` when no file is given (plain gRPC, or
    /// TLS is not possible).
    pub fn client_config(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        if !self.is_set() {
            return Ok(None);
        }
        pair(&self.cert_file, &self.key_file, "cert", "key")?;
        let Some(ca) = &self.ca_file else {
            return Err(TlsError::Config(
                "a client certificate needs the CA file that verifies the servers".into(),
            ));
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(certs(ca)?));
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            config = config.identity(Identity::from_pem(certs(cert)?, key_pem(key)?));
        }
        Ok(Some(config))
    }
}

fn pair(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    cert_name: &str,
    key_name: &str,
) -> Result<(), TlsError> {
    match (cert, key) {
        (Some(_), None) => Err(TlsError::Config(format!(
            "{cert_name} is given without {key_name}"
        ))),
        (None, Some(_)) => Err(TlsError::Config(format!(
            "{key_name} is given without {cert_name}"
        ))),
        _ => Ok(()),
    }
}

fn server(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
    client_auth: bool,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(certs(cert)?, key_pem(key)?));
    if client_auth {
        let ca = ca
            .as_ref()
            .ok_or_else(|| TlsError::Config("client certificate auth needs a trusted CA".into()))?;
        config = config
            .client_ca_root(Certificate::from_pem(certs(ca)?))
            .client_auth_optional(false);
    }
    Ok(Some(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError::Io {
        path: path.display().to_string(),
        err,
    })
}

/// The PEM text of a certificate file, checked to hold at least one certificate.
fn certs(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(path)?;
    let n = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|_| ()))
        .collect::<Result<Vec<()>, _>>()
        .map_err(|e| TlsError::Bad(format!("{}: {e}", path.display())))?
        .len();
    if n == 0 {
        return Err(TlsError::Bad(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(pem)
}

/// The PEM text of a key file, checked to hold a private key.
fn key_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError::Bad(format!(
            "{}: no usable PEM private key: {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_settings_that_do_not_fit() {
        let t = StoreTls {
            cert_file: Some("/x.pem".into()),
            ..Default::default()
        };
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("without key_file"));
        let t = StoreTls {
            client_cert_auth: true,
            ..Default::default()
        };
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("client_cert_auth needs"));
        let t = StoreTls {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            ..Default::default()
        };
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/c.pem"));
        assert!(StoreTls::default().validate().is_ok());
        assert!(StoreTls::default().client_server().unwrap().is_none());
    }

    #[test]
    fn refuses_files_without_pem() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let t = TlsFiles {
            ca_file: Some(junk.clone()),
            ..Default::default()
        };
        let e = t.client_config().unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
