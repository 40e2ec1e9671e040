//! Per-run certificates: a CA, the API server's serving certificate and the service-account
//! signing key. Generated fresh for every control plane, never written outside its temp dir.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::Error;

/// PEM material for one control plane.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate that signed the serving certificate; clients trust it.
    pub ca_cert_pem: String,
    /// Serving certificate of kube-apiserver (SANs: 127.0.0.1, localhost, kubernetes.default…).
    pub serving_cert_pem: String,
    /// Private key of the serving certificate.
    pub serving_key_pem: String,
    /// Private key the API server signs service-account tokens with.
    pub sa_signing_key_pem: String,
    /// Public key the API server verifies service-account tokens with.
    pub sa_public_key_pem: String,
}

impl Pki {
    /// Generates a CA, a serving certificate and a service-account key pair (all ECDSA P-256).
    pub fn generate() -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kube-reloader-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "10.0.0.1".to_owned(),
        ])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        Ok(Self {
            ca_cert_pem: ca_cert.pem(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            sa_signing_key_pem: sa_key.serialize_pem(),
            sa_public_key_pem: sa_key.public_key_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_pem_material() {
        let pki = Pki::generate().unwrap();
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            pki.serving_cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_ne!(pki.ca_cert_pem, pki.serving_cert_pem);
        assert!(pki.serving_key_pem.contains("PRIVATE KEY"));
        assert!(pki.sa_public_key_pem.contains("PUBLIC KEY"));
        assert_ne!(pki.serving_key_pem, pki.sa_signing_key_pem);
    }
}
