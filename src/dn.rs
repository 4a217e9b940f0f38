//! Distinguished names (pure): folding a DN for comparison, undoing one
//! escape, and the CN of a DN's first RDN. Used by the LDAP source to match
//! members to groups and by the mapping rules to match a group by its CN.

/// A DN folded for comparison: escapes (`\,`, `\3D`) undone, lower case,
/// no spaces around `,` and `=`. `CN=a\2Cb, OU=X` and `cn=a\,b,ou=x` agree.
pub fn norm_dn(dn: &str) -> String {
    // Most DNs are printable ASCII with one `=` per RDN and nothing to
    // unescape, trim or escape again: folding them is lower-casing them.
    let plain = dn
        .bytes()
        .all(|c| c.is_ascii_graphic() && !matches!(c, b'\\' | b'+' | b'"' | b'<' | b'>' | b';'))
        && dn
            .split(',')
            .all(|rdn| rdn.bytes().filter(|&c| c == b'=').count() == 1);
    if plain {
        return dn.to_ascii_lowercase();
    }
    norm_dn_escaped(dn)
}

fn norm_dn_escaped(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut value: Vec<u8> = Vec::new();
    let mut in_value = false;
    let flush = |out: &mut String, value: &mut Vec<u8>| {
        let v = String::from_utf8_lossy(value);
        let v = v.trim();
        // A value that needs it is escaped again, the same way every time.
        for c in v.chars().flat_map(char::to_lowercase) {
            if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                out.push('\\');
            }
            out.push(c);
        }
        value.clear();
    };
    let b = dn.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            if let Some((byte, len)) = dn_escape(b, i) {
                value.push(byte);
                i += len;
                continue;
            }
        }
        if !in_value && c == b'=' {
            let attr = String::from_utf8_lossy(&value).trim().to_ascii_lowercase();
            out.push_str(&attr);
            out.push('=');
            value.clear();
            in_value = true;
        } else if c == b',' && in_value {
            flush(&mut out, &mut value);
            out.push(',');
            in_value = false;
        } else {
            value.push(c);
        }
        i += 1;
    }
    if in_value {
        flush(&mut out, &mut value);
    } else {
        out.push_str(String::from_utf8_lossy(&value).trim());
    }
    out
}

/// What the DN escape starting at `b[i]` (a backslash) stands for, and how
/// many bytes it takes: `\2C` → (`,`, 3), `\,` → (`,`, 2); `None` for a
/// backslash at the end.
pub fn dn_escape(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let hex = b
        .get(i + 1..i + 3)
        // from_str_radix alone would take `\+D` as 0x0D.
        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u8::from_str_radix(h, 16).ok());
    match hex {
        Some(byte) => Some((byte, 3)),
        None => b.get(i + 1).map(|&c| (c, 2)),
    }
}

/// The CN of a DN's first RDN with its escapes undone:
/// `CN=Smith\, J,OU=Groups` → `Smith, J`.
pub fn cn_of(dn: &str) -> Option<std::borrow::Cow<'_, str>> {
    let (k, rest) = dn.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("cn") {
        return None;
    }
    if !rest.contains('\\') {
        let v = rest.split([',', '+']).next().unwrap_or_default();
        return Some(v.trim().into());
    }
    let b = rest.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b',' | b'+' => break,
            b'\\' => match dn_escape(b, i) {
                Some((byte, len)) => {
                    out.push(byte);
                    i += len;
                }
                None => break,
            },
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).trim().to_string().into())
}

#[cfg(test)]
mod tests;
