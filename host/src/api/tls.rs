//! The API's TLS: the certificate chain and private key of `[server.tls]`, read once at
//! start into a rustls acceptor (aws-lc-rs, the provider the broker and MongoDB clients already
//! use; TLS 1.2 and 1.3; HTTP/1.1 only, as the server speaks no other).

use crate::config::TlsFiles;
use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// An acceptor presenting the certificate of `files`; a missing, unreadable or mismatched
/// file is an error naming it.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading server.tls.cert {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing server.tls.cert {}", files.cert.display()))?;
    if chain.is_empty() {
        bail!(
            "server.tls.cert {} holds no PEM certificate",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading server.tls.key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider's protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "server.tls: the key {} does not go with the certificate {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
