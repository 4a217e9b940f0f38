//! `pbx-onboard.toml(5)`, rendered from the README: its configuration
//! table, the mapping-rule example and the LDAP key table become the man
//! page's sections, so the two never disagree. Used by `build.rs`; the
//! tests check the result (tests/it/package.rs).

/// The README sections the page is made of, in order: (heading to find,
/// man page section title, what to take from it).
const PARTS: &[(&str, &str, Take)] = &[
    ("## Configuration", "KEYS", Take::Table),
    ("### Mapping rules", "MAPPING RULES", Take::Code),
    (
        "### Active Directory",
        "ACTIVE DIRECTORY SOURCES",
        Take::Code,
    ),
    ("### OpenLDAP", "OPENLDAP SOURCES", Take::Code),
    (
        "### Keys for both profiles",
        "LDAP SOURCE KEYS",
        Take::Table,
    ),
];

#[derive(Clone, Copy)]
enum Take {
    /// The first Markdown table after the heading: key | default | meaning.
    Table,
    /// The first fenced code block after the heading.
    Code,
}

pub fn render(readme: &str, version: &str) -> Result<String, String> {
    let mut page = format!(
        ".TH PBX\\-ONBOARD.TOML 5 \"\" \"pbx-onboard {version}\" \"File Formats\"\n\
         .SH NAME\n\
         pbx\\-onboard.toml \\- configuration of pbx\\-onboard\n\
         .SH SYNOPSIS\n\
         .I /etc/pbx\\-onboard/pbx\\-onboard.toml\n\
         .SH DESCRIPTION\n\
         The configuration of \\fBpbx\\-onboard\\fR(1) is one TOML file: the store, the \
         safety limits, mail, the welcome pages, the customer's domains with their \
         numbering plans and sites, the mapping rules, and the sources (CSV drop \
         folders and LDAP / Active Directory). Relative paths resolve against the \
         file's folder. Unknown keys and bad values are refused with the file, line \
         and key; \\fBpbx\\-onboard check\\-config\\fR checks a file without changing \
         anything.\n\
         .PP\n\
         Secrets (the LDAP bind password, the SMTP password) are never written in this \
         file: name a file (\\fB*_file\\fR) or an environment variable (\\fB*_env\\fR) \
         instead. Under systemd, \\fBLoadCredential=\\fR passes a file from \
         \\fI/etc/pbx\\-onboard/secrets/\\fR to the service.\n"
    );
    for (heading, title, take) in PARTS {
        let body = section(readme, heading).ok_or_else(|| {
            format!("README.md has no `{heading}` section for pbx-onboard.toml(5)")
        })?;
        page.push_str(&format!(".SH {title}\n"));
        match take {
            Take::Table => {
                let rows = table(body);
                if rows.is_empty() {
                    return Err(format!("README.md `{heading}` has no table"));
                }
                for row in rows {
                    let [key, default, meaning] = row;
                    page.push_str(&format!(".TP\n{}\n", inline(&key)));
                    let default = default.trim();
                    if default.is_empty() || default == "—" {
                        page.push_str(&format!("{}\n", inline(&meaning)));
                    } else {
                        page.push_str(&format!(
                            "Default: {}. {}\n",
                            inline(default),
                            inline(&meaning)
                        ));
                    }
                }
            }
            Take::Code => {
                let code = code_block(body)
                    .ok_or_else(|| format!("README.md `{heading}` has no code block"))?;
                page.push_str(".PP\n.RS 4\n.nf\n");
                for line in code.lines() {
                    page.push_str(&format!("\\&{}\n", escape(line)));
                }
                page.push_str(".fi\n.RE\n");
            }
        }
    }
    page.push_str(
        ".SH FILES\n\
         .TP\n\
         .I /etc/pbx\\-onboard/pbx\\-onboard.toml\n\
         The configuration the service and the commands read (\\fB\\-\\-config\\fR names another).\n\
         .TP\n\
         .I /etc/pbx\\-onboard/secrets/\n\
         Passwords for \\fBLoadCredential=\\fR (mode 0700).\n\
         .TP\n\
         .I /var/lib/pbx\\-onboard/\n\
         The SQLite store, the link key, the drop folder (\\fIinbox/\\fR), reports and the mail folder.\n\
         .SH SEE ALSO\n\
         \\fBpbx\\-onboard\\fR(1), \\fBsystemd.exec\\fR(5), \\fBsystemd\\-creds\\fR(1)\n\
         .PP\n\
         /usr/share/doc/pbx\\-onboard/README.md\n",
    );
    Ok(page)
}

/// The text after `heading` up to the next heading of the same or a higher
/// level.
fn section<'a>(readme: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = readme
        .match_indices(heading)
        .find(|(i, _)| {
            (*i == 0 || readme[..*i].ends_with('\n'))
                && readme[i + heading.len()..].starts_with('\n')
        })?
        .0
        + heading.len();
    let rest = &readme[start..];
    let mut offset = 0;
    let mut fenced = false;
    for line in rest.split_inclusive('\n') {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !fenced && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return Some(&rest[..offset]);
        }
        offset += line.len();
    }
    Some(rest)
}

/// The rows of the first table: three cells each (header and rule skipped).
fn table(body: &str) -> Vec<[String; 3]> {
    body.lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| {
            let cells = cells(l);
            match cells.as_slice() {
                [a, b, c] => Some([a.clone(), b.clone(), c.clone()]),
                _ => None,
            }
        })
        .collect()
}

/// Cells of a table row, split on `|` outside backticks.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut code = false;
    for c in inner.chars() {
        match c {
            '|' if !code => cells.push(String::new()),
            _ => {
                if c == '`' {
                    code = !code;
                }
                if let Some(s) = cells.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

fn code_block(body: &str) -> Option<String> {
    let mut lines = body.lines().skip_while(|l| !l.starts_with("```"));
    lines.next()?;
    let code: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    Some(code.join("\n"))
}

/// Roff-escapes plain text: backslashes, hyphens, and a few typographic
/// characters man renders badly in a C locale.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '—' => out.push_str("\\(em"),
            '–' => out.push_str("\\(en"),
            '…' => out.push_str("..."),
            '→' => out.push_str("\\(->"),
            '×' => out.push_str("\\(mu"),
            '·' => out.push_str("\\(pc"),
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown cell as roff: `code` bold, **strong** bold, [text](link) as
/// text.
fn inline(md: &str) -> String {
    let mut out = String::new();
    let mut rest = md;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                out.push_str(&format!("\\fB{}\\fR", escape(&after[..end])));
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("**") {
            if let Some(end) = after.find("**") {
                out.push_str(&format!("\\fB{}\\fR", inline(&after[..end])));
                rest = &after[end + 2..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('[') {
            if let Some((text, tail)) = after.split_once("](") {
                if let Some(end) = tail.find(')') {
                    out.push_str(&inline(text));
                    rest = &tail[end + 1..];
                    continue;
                }
            }
        }
        out.push_str(&escape(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    // A line must not start with a control character.
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}
