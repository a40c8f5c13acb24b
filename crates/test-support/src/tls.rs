//! TLS material for a test server: a CA made for the test and a certificate it signed.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM texts of a fresh CA and a server certificate (with its key) for `hosts` (names or IPs).
#[derive(Debug, Clone)]
pub struct ServerMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA and a certificate for `hosts`, signed by it. Each call makes a new CA, so material from
/// another call does not verify against it.
pub fn server_material(hosts: &[&str]) -> ServerMaterial {
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).expect("empty CA parameters are valid");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "duellsync test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
        .expect("the CA signs itself");
    let key = KeyPair::generate().expect("a server key");
    let params = CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
        .expect("host names and IPs are valid subject alternative names");
    let cert = params
        .signed_by(&key, &ca)
        .expect("the CA signs the server certificate");
    ServerMaterial {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
