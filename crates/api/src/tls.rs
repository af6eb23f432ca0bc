//! TLS for the public address (builders' feeds and downloads): a certificate chain and its
//! private key, read from PEM files, made into a rustls server configuration (the `ring`
//! provider, TLS 1.2 and 1.3, ALPN `http/1.1`: the server speaks HTTP/1.1 only). The admin API
//! on loopback stays plain HTTP.
//!
//! [`ServerTls`] is what [`crate::serve_tls`] takes; every problem with the files is a
//! [`TlsError`] naming the file and what is wrong with it, so that a node refuses to start
//! rather than serve without the certificate it was given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{} holds no private key (expected PEM: PKCS#8 \"PRIVATE KEY\", SEC1 \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM: {why}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The certificate does not parse.
    #[error("the certificate in {} is not valid: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key cannot be used (an unsupported or malformed key).
    #[error("the private key in {} cannot be used: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// A TLS server configuration and how long a client has to finish its handshake.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// How long a client has to complete its TLS handshake unless set otherwise.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Reads a PEM certificate chain (end-entity certificate first) and its PEM private key
    /// (PKCS#8, SEC1 or RSA).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        ServerTls::from_pem(&read(cert)?, cert, &read(key)?, key)
    }

    /// As [`ServerTls::from_pem_files`], from the files' bytes (`cert_path` and `key_path`
    /// name them in errors).
    pub fn from_pem(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
    ) -> Result<ServerTls, TlsError> {
        let pem_error = |path: &Path, e: rustls_pki_types::pem::Error| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert_path, e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert_path.to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: key_path.to_owned(),
            },
            e => pem_error(key_path, e),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Key {
                path: key_path.to_owned(),
                why: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                },
                rustls::Error::InvalidCertificate(why) => TlsError::Certificate {
                    path: cert_path.to_owned(),
                    why: format!("{why:?}"),
                },
                e => TlsError::Key {
                    path: key_path.to_owned(),
                    why: e.to_string(),
                },
            })?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets how long a client has to complete its handshake before it is dropped.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ServerTls {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has to complete its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}
