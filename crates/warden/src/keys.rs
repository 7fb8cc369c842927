//! The gateway's own keys, kept as PKCS#8 PEM files with mode 0600 in the data directory.
//! Never in the store, never logged. The first process to need a key creates it; a second
//! process racing it reads the winner's file.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use warden_core::token::TokenKeys;

pub fn load_or_create(data_dir: &Path, name: &str) -> Result<TokenKeys> {
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ok();
    let path = dir.join(format!("{name}.pem"));
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return TokenKeys::from_pkcs8_pem(&pem).with_context(|| format!("key file {}", path.display()));
    }
    let keys = TokenKeys::generate();
    let tmp = dir.join(format!(".{name}.pem.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(keys.to_pkcs8_pem().as_bytes())?;
        f.sync_all()?;
    }
    // hard_link fails if another process won the race; then its key is the key.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            std::fs::remove_file(&tmp).ok();
            Ok(keys)
        }
        Err(_) => {
            std::fs::remove_file(&tmp).ok();
            let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            TokenKeys::from_pkcs8_pem(&pem).with_context(|| format!("key file {}", path.display()))
        }
    }
}
