//! The command-line face of [`ClientSecurity`], shared by `ringmq admin` and `ringmq bench`: TLS
//! (`--tls`, `--tls-ca`, a client certificate) and the ACL account requests are signed with
//! (`--access-key`/`--secret-key`, or `--profile FILE` so the secret stays out of `ps`).

use super::connection::ClientSecurity;
use crate::security::sign::Credentials;
use crate::security::tls::{ClientTlsFiles, client_config};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct SecurityArgs {
    /// Connect with TLS
    #[arg(long)]
    pub tls: bool,
    /// Verify servers against this CA (PEM); without it TLS does not check the server's certificate
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require one
    #[arg(long, requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// ACL access key to sign requests with
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// ACL secret key
    #[arg(long, requires = "access_key")]
    pub secret_key: Option<String>,
    /// ACL credentials file: accessKey and secretKey, as YAML (RocketMQ's tools.yml) or key=value
    #[arg(long, conflicts_with = "access_key")]
    pub profile: Option<PathBuf>,
}

impl SecurityArgs {
    pub fn resolve(&self) -> Result<ClientSecurity, String> {
        let credentials = match (&self.access_key, &self.secret_key, &self.profile) {
            (Some(a), Some(s), _) => Some(Credentials::new(a, s)),
            (_, _, Some(p)) => Some(Credentials::from_profile(p)?),
            (None, None, None) => None,
            _ => return Err("--access-key and --secret-key go together".into()),
        };
        let uses_tls = self.tls || self.tls_ca.is_some() || self.tls_client_cert.is_some();
        let tls = if uses_tls {
            let cert_key = self.tls_client_cert.clone().zip(self.tls_client_key.clone());
            Some(client_config(&ClientTlsFiles { ca: self.tls_ca.clone(), cert_key })?)
        } else {
            None
        };
        Ok(ClientSecurity { tls, credentials })
    }
}
