//! A throwaway certificate authority for the internal APIs' mutual TLS: it issues
//! certificates for a name and writes them, with their keys and its own certificate,
//! as the PEM files a deployment mounts (`tls.crt`, `tls.key`, `ca.crt`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use confer_proto::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    /// A new CA, its files under a fresh temporary directory.
    pub fn new() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "confer-ca-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Confer test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer, dir })
    }

    /// Its own certificate, PEM: what a CA bundle holds.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name`, good for serving and for connecting, written as
    /// `<stem>.crt` and `<stem>.key` beside the CA's `ca.crt`.
    pub fn issue(&self, stem: &str, name: &str) -> anyhow::Result<TlsFiles> {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = TlsFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
            ca: self.dir.join("ca.crt"),
            name: name.to_owned(),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        std::fs::write(&files.ca, self.issuer.pem())?;
        Ok(files)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
