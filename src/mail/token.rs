//! Link tokens and form (CSRF) tokens.
//!
//! A welcome link's token is HMAC-SHA256(link key, salt): 256 bits, URL-safe
//! base64. The salt (128 random bits) is in the store, the key in a file
//! outside it (`mail.link_key_file`, created with mode 0600 on first use),
//! and the store keeps only SHA-256(token). So the database alone holds no
//! usable link, and a retried or duplicated email carries the same link.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("link key file {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// The secret that turns a link's salt into its token.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// Reads the key, or creates it (32 random bytes, hex, mode 0600).
    pub fn load_or_create(path: &Path) -> Result<LinkKey, KeyError> {
        let err = |message: String| KeyError::Io {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| err(e.to_string()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "the key is readable by others (mode {:o}): chmod 600 it",
                        mode & 0o777
                    )));
                }
                let bytes =
                    hex::decode(text.trim()).map_err(|_| err("expected 64 hex digits".into()))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| err("expected 64 hex digits".into()))?;
                Ok(LinkKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        use std::io::Write;
                        f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                            .and_then(|()| f.sync_all())
                            .map_err(|e| err(e.to_string()))?;
                        Ok(LinkKey(key))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        LinkKey::load_or_create(path)
                    }
                    Err(e) => Err(err(e.to_string())),
                }
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The token of the link with this salt.
    pub fn token(&self, salt: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(&[b"welcome-link", salt.as_bytes()]))
    }

    /// A form token bound to the link and the time it was issued.
    pub fn form_token(&self, token_hash: &str, issued: i64) -> String {
        let mac = self.mac(&[b"form", token_hash.as_bytes(), &issued.to_be_bytes()]);
        format!("{issued}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks a form token for this link, no older than `max_age` seconds.
    pub fn check_form_token(&self, token_hash: &str, form: &str, now: i64, max_age: i64) -> bool {
        let Some((issued, _)) = form.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<i64>() else {
            return false;
        };
        if issued > now + 60 || now - issued > max_age {
            return false;
        }
        let want = self.form_token(token_hash, issued);
        // Constant time: compare MACs of both strings.
        self.mac(&[want.as_bytes()]) == self.mac(&[form.as_bytes()])
    }
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token as it may appear in a URL: 43 URL-safe base64 characters.
pub fn plausible_token(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
