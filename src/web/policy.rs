//! What a portal password and a voicemail PIN must be, and how they are
//! stored (argon2id, OWASP parameters, PHC strings).
//!
//! Passwords follow NIST SP 800-63B: a minimum length (15 by default, never
//! below 8), at least 64 characters allowed, counted in Unicode code points
//! after NFKC normalisation, no composition rules, rejected when on a list of
//! common passwords or when they contain the extension or the user's names.
//! Every refusal says why.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use unicode_normalization::UnicodeNormalization;

/// The longest password accepted, in code points (so at most 1 KiB is hashed).
pub const PASSWORD_MAX: usize = 256;
pub const PIN_MAX: usize = 16;

/// Shipped list of common passwords, one per line, lower case.
const COMMON: &str = include_str!("common-passwords.txt");

/// Why a password or PIN is refused; shown in the user's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    TooShort { min: usize, got: usize },
    TooLong(usize),
    Common,
    FewCharacters,
    HasExtension,
    HasName,
    NotDigits,
    PinTooShort(usize),
    PinTooLong(usize),
    Triple,
    FewDigits,
    Run,
    Repeated,
    Keypad,
    PinHasExtension,
}

impl Problem {
    /// The message in `en` or `de` (the languages with templates).
    pub fn text(&self, lang: &str) -> String {
        let de = lang == "de";
        let pick = |en: &str, de_text: &str| if de { de_text } else { en }.to_string();
        match self {
            Problem::TooShort { min, got } if de => {
                format!("Mindestens {min} Zeichen (dieses hat {got}).")
            }
            Problem::TooShort { min, got } => {
                format!("Use at least {min} characters (this one has {got}).")
            }
            Problem::TooLong(max) if de => format!("Höchstens {max} Zeichen."),
            Problem::TooLong(max) => format!("Use at most {max} characters."),
            Problem::PinTooShort(min) if de => format!("Mindestens {min} Ziffern."),
            Problem::PinTooShort(min) => format!("Use at least {min} digits."),
            Problem::PinTooLong(max) if de => format!("Höchstens {max} Ziffern."),
            Problem::PinTooLong(max) => format!("Use at most {max} digits."),
            Problem::Common => pick(
                "This password is on a list of commonly used passwords. Choose another.",
                "Dieses Passwort steht auf einer Liste häufig benutzter Passwörter. Bitte wählen Sie ein anderes.",
            ),
            Problem::FewCharacters => pick(
                "This password repeats too few different characters.",
                "Dieses Passwort wiederholt zu wenige verschiedene Zeichen.",
            ),
            Problem::HasExtension => pick(
                "The password must not contain your extension.",
                "Das Passwort darf Ihre Durchwahl nicht enthalten.",
            ),
            Problem::HasName => pick(
                "The password must not contain your name.",
                "Das Passwort darf Ihren Namen nicht enthalten.",
            ),
            Problem::NotDigits => pick("Use digits only.", "Bitte nur Ziffern verwenden."),
            Problem::Triple => pick(
                "Do not repeat a digit more than twice in a row.",
                "Keine Ziffer öfter als zweimal hintereinander.",
            ),
            Problem::FewDigits => pick(
                "Use at least 3 different digits.",
                "Mindestens 3 verschiedene Ziffern verwenden.",
            ),
            Problem::Run => pick(
                "Avoid runs of digits like 1234 or 9876.",
                "Keine Ziffernfolgen wie 1234 oder 9876.",
            ),
            Problem::Repeated => pick(
                "Avoid repeated groups like 408408.",
                "Keine wiederholten Gruppen wie 408408.",
            ),
            Problem::Keypad => pick(
                "Avoid straight lines on the keypad like 2580 or 159.",
                "Keine geraden Linien auf der Tastatur wie 2580 oder 159.",
            ),
            Problem::PinHasExtension => pick(
                "The PIN must not contain your extension or its reverse.",
                "Die PIN darf Ihre Durchwahl nicht enthalten, auch nicht rückwärts.",
            ),
        }
    }
}

pub struct Policy {
    pub password_min: usize,
    pub pin_min: usize,
    common: HashSet<String>,
}

/// Who the secrets are for.
pub struct Owner<'a> {
    pub first_name: &'a str,
    pub last_name: Option<&'a str>,
    pub extension: &'a str,
}

impl Policy {
    /// `extra` adds a site's own list (one password per line).
    pub fn new(password_min: usize, pin_min: usize, extra: Option<&str>) -> Policy {
        let common = COMMON
            .lines()
            .chain(extra.unwrap_or("").lines())
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        Policy {
            password_min: password_min.max(8),
            pin_min: pin_min.max(4),
            common,
        }
    }

    /// The policy `[web]` configures, with its blocklist file read.
    pub fn for_config(web: &crate::config::WebConfig) -> std::io::Result<Policy> {
        let extra = match &web.password_blocklist_file {
            Some(p) => Some(std::fs::read_to_string(p)?),
            None => None,
        };
        Ok(Policy::new(
            web.password_min_length,
            web.pin_min_length,
            extra.as_deref(),
        ))
    }

    /// The normalised password, or why it is refused.
    pub fn password(&self, pw: &str, owner: &Owner<'_>) -> Result<String, Problem> {
        let pw: String = pw.nfkc().collect();
        let n = pw.chars().count();
        if n < self.password_min {
            return Err(Problem::TooShort {
                min: self.password_min,
                got: n,
            });
        }
        if n > PASSWORD_MAX {
            return Err(Problem::TooLong(PASSWORD_MAX));
        }
        let lower = pw.to_lowercase();
        if self.common.contains(&lower)
            || self
                .common
                .contains(lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!'))
        {
            return Err(Problem::Common);
        }
        if pw.chars().collect::<HashSet<_>>().len() < 4 {
            return Err(Problem::FewCharacters);
        }
        // An owner without an extension (a console account) has none to avoid.
        if !owner.extension.is_empty() && lower.contains(owner.extension) {
            return Err(Problem::HasExtension);
        }
        let names = std::iter::once(owner.first_name).chain(owner.last_name);
        for name in names {
            let name: String = name.nfkc().collect::<String>().to_lowercase();
            for part in name.split(|c: char| !c.is_alphanumeric()) {
                if part.chars().count() >= 3 && lower.contains(part) {
                    return Err(Problem::HasName);
                }
            }
        }
        Ok(pw)
    }

    /// Why a voicemail PIN is refused, if it is.
    pub fn pin(&self, pin: &str, extension: &str) -> Result<(), Problem> {
        if pin.is_empty() || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Problem::NotDigits);
        }
        let d: Vec<u8> = pin.bytes().map(|b| b - b'0').collect();
        if d.len() < self.pin_min {
            return Err(Problem::PinTooShort(self.pin_min));
        }
        if d.len() > PIN_MAX {
            return Err(Problem::PinTooLong(PIN_MAX));
        }
        if d.windows(3)
            .any(|w| matches!(w, [a, b, c] if a == b && b == c))
        {
            return Err(Problem::Triple);
        }
        if d.iter().collect::<HashSet<_>>().len() < 3 {
            return Err(Problem::FewDigits);
        }
        let step = |w: &[u8], s: i8| {
            w.windows(2).all(|p| match p {
                [a, b] => (*b as i8 - *a as i8).rem_euclid(10) == s.rem_euclid(10),
                _ => false,
            })
        };
        if d.windows(4).any(|w| step(w, 1) || step(w, -1)) {
            return Err(Problem::Run);
        }
        for p in 2..=d.len() / 2 {
            if d.iter().skip(p).zip(d.iter()).all(|(a, b)| a == b) {
                return Err(Problem::Repeated);
            }
        }
        if keypad_line(&d) {
            return Err(Problem::Keypad);
        }
        let reversed: String = extension.chars().rev().collect();
        if extension.len() >= 3 && (pin.contains(extension) || pin.contains(&reversed)) {
            return Err(Problem::PinHasExtension);
        }
        Ok(())
    }
}

/// Straight lines of three or more keys on a phone keypad, both directions.
fn keypad_line(d: &[u8]) -> bool {
    const LINES: &[&[u8]] = &[
        &[1, 2, 3],
        &[4, 5, 6],
        &[7, 8, 9],
        &[1, 4, 7],
        &[2, 5, 8, 0],
        &[3, 6, 9],
        &[1, 5, 9],
        &[3, 5, 7],
    ];
    LINES.iter().any(|line| {
        let fwd: Vec<u8> = line.to_vec();
        let rev: Vec<u8> = line.iter().rev().copied().collect();
        [fwd, rev].iter().any(|l| {
            (0..=l.len().saturating_sub(3)).any(|s| {
                let seg = l.get(s..).unwrap_or_default();
                (3..=seg.len()).any(|n| {
                    let head = seg.get(..n).unwrap_or_default();
                    d.windows(n).any(|w| w == head)
                })
            })
        })
    })
}

/// argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), PHC string.
/// CPU-heavy: call it off the async threads (`spawn_blocking`).
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(HashError::Params)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon
        .hash_password(secret.as_bytes(), &salt)
        .map_err(HashError::Hash)?;
    Ok(hash.to_string())
}

/// Hashing a secret failed (argon2's parameters or its hasher). argon2
/// built without `std` has no `std::error::Error` to chain, so the cause is
/// kept as a value and shown in the message.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters refused: {0}")]
    Params(argon2::Error),
    #[error("argon2 hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

#[cfg(test)]
mod tests;
