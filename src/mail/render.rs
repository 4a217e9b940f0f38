//! Email rendering with `askama`: the welcome (HTML + text, one template
//! pair per language, English when the user's language has none) and the
//! admin run report.

use crate::model::language;
use crate::report::RunReport;
use askama::Template;

/// What a welcome email says.
#[derive(Debug, Clone)]
pub struct WelcomeView {
    pub first_name: String,
    pub domain: String,
    pub extension: String,
    pub voicemail: bool,
    /// "sip", "web" or "".
    pub device: String,
    pub link: String,
    pub expires: String,
    pub from_name: String,
}

#[derive(Template)]
#[template(path = "mail/welcome.en.txt")]
struct WelcomeEnText<'a> {
    w: &'a WelcomeView,
}

#[derive(Template)]
#[template(path = "mail/welcome.en.html")]
struct WelcomeEnHtml<'a> {
    w: &'a WelcomeView,
}

#[derive(Template)]
#[template(path = "mail/welcome.de.txt")]
struct WelcomeDeText<'a> {
    w: &'a WelcomeView,
}

#[derive(Template)]
#[template(path = "mail/welcome.de.html")]
struct WelcomeDeHtml<'a> {
    w: &'a WelcomeView,
}

/// A rendered email: subject, plain text, HTML.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn welcome(w: &WelcomeView, lang: &str) -> Result<Rendered, askama::Error> {
    Ok(match language(Some(lang)) {
        "de" => Rendered {
            subject: format!("Ihre neue Durchwahl {} bei {}", w.extension, w.domain),
            text: WelcomeDeText { w }.render()?,
            html: WelcomeDeHtml { w }.render()?,
        },
        _ => Rendered {
            subject: format!("Your new phone extension {} at {}", w.extension, w.domain),
            text: WelcomeEnText { w }.render()?,
            html: WelcomeEnHtml { w }.render()?,
        },
    })
}

#[derive(Template)]
#[template(path = "mail/report.txt")]
struct ReportText<'a> {
    r: &'a RunReport,
    created: &'a [String],
    disabled: &'a [String],
}

#[derive(Template)]
#[template(path = "mail/report.html")]
struct ReportHtml<'a> {
    r: &'a RunReport,
    created: &'a [String],
    disabled: &'a [String],
}

/// The admin report of a run; `created` and `disabled` are one line per user.
pub fn report(
    r: &RunReport,
    created: &[String],
    disabled: &[String],
) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: format!(
            "pbx-onboard: {} into {}: {} created, {} disabled, {} refused ({})",
            r.source,
            r.domain,
            r.created,
            r.disabled,
            r.errors.len(),
            r.outcome.as_str()
        ),
        text: ReportText {
            r,
            created,
            disabled,
        }
        .render()?,
        html: ReportHtml {
            r,
            created,
            disabled,
        }
        .render()?,
    })
}

#[cfg(test)]
mod tests;
