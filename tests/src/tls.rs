//! Certificates for tests about TLS: a CA of the run's own and a certificate it signed for
//! `localhost` and `127.0.0.1`, as PEM files under `target/tmp/tls/<name>/`.

use crate::files::scratch;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::PathBuf;

/// The PEM files of one test's public-key infrastructure.
pub struct Pki {
    /// The CA's certificate (what a client trusts).
    pub ca: PathBuf,
    /// The server's certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// Another CA's certificate, which signed nothing here (a client trusting only it must
    /// refuse the server).
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1`.
pub fn pki(name: &str) -> Pki {
    let dir = scratch("tls").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let authority = ca("mysimbdp test CA");
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "mysimbdp test host");
    let cert = params.signed_by(&key, &authority).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("host.pem"),
        key: dir.join("host.key"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&pki.ca, authority.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::write(&pki.other_ca, ca("another CA").pem()).unwrap();
    pki
}
