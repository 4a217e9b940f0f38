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
mod tests {
    use super::*;

    fn view() -> WelcomeView {
        WelcomeView {
            first_name: "Ada <b>".into(),
            domain: "acme.example".into(),
            extension: "2001".into(),
            voicemail: true,
            device: "sip".into(),
            link: "https://pbx.acme.example/welcome/abc".into(),
            expires: "2026-11-30 09:00 UTC".into(),
            from_name: "PBX Onboarding".into(),
        }
    }

    #[test]
    fn language_falls_back_to_english() {
        assert_eq!(language(Some("de-AT")), "de");
        assert_eq!(language(Some("DE_de.UTF-8")), "de");
        assert_eq!(language(Some("fr")), "en");
        assert_eq!(language(None), "en");
    }

    #[test]
    fn welcome_says_what_the_user_has_and_escapes_html() {
        let en = welcome(&view(), "en").unwrap();
        assert!(en.subject.contains("2001"));
        assert!(en.text.contains("https://pbx.acme.example/welcome/abc"));
        assert!(en.text.contains("voicemail"));
        assert!(en.text.contains("SIP user 2001"));
        assert!(en.text.contains("Ada <b>"), "plain text is not escaped");
        assert!(en.html.contains("Ada &#60;b&#62;") || en.html.contains("Ada &lt;b&gt;"));
        let de = welcome(
            &WelcomeView {
                voicemail: false,
                device: String::new(),
                ..view()
            },
            "de",
        )
        .unwrap();
        assert!(de.subject.starts_with("Ihre neue Durchwahl"));
        assert!(!de.text.contains("Sprachbox"));
        assert!(!de.text.contains("SIP"));
    }
}
