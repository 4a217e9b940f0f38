//! The welcome pages' words, one table per language (the form itself has a
//! template per language), and the choice of language for a page.

use axum::http::{header, HeaderMap};

/// The pages' words in one language (the form has a template per language).
pub(super) struct Words {
    pub(super) lang: &'static str,
    pub(super) too_many: (&'static str, &'static str),
    pub(super) dead: (&'static str, [&'static str; 2]),
    pub(super) renew_button: &'static str,
    pub(super) forbidden: (&'static str, &'static str),
    pub(super) error: (&'static str, &'static str),
    pub(super) done: &'static str,
    pub(super) done_both: &'static str,
    pub(super) done_password: &'static str,
    pub(super) check: (&'static str, &'static str),
    pub(super) password_mismatch: &'static str,
    pub(super) pin_mismatch: &'static str,
}

const EN: Words = Words {
    lang: "en",
    too_many: ("Too many requests", "Please wait a minute and try again."),
    dead: (
        "This link does not work",
        [
            "It may have expired, been used already, or been replaced by a newer email.",
            "If it was sent to you and you have not finished setting up, we can email you a new link. It goes only to the address we have on file.",
        ],
    ),
    renew_button: "Send me a new link",
    forbidden: (
        "Please start again",
        "This form expired or did not come from this page. Open the link from your email again.",
    ),
    error: (
        "Something went wrong",
        "Nothing was changed. Please try again in a few minutes.",
    ),
    done: "You are all set",
    done_both: "Your portal password and voicemail PIN are saved. You can close this page.",
    done_password: "Your portal password is saved. You can close this page.",
    check: (
        "Check your email",
        "If this link was sent to someone who has not finished setting up, a new link is on its way to the address on file. Earlier links no longer work.",
    ),
    password_mismatch: "The two passwords are not the same.",
    pin_mismatch: "The two PINs are not the same.",
};

const DE: Words = Words {
    lang: "de",
    too_many: ("Zu viele Anfragen", "Bitte warten Sie eine Minute und versuchen Sie es erneut."),
    dead: (
        "Dieser Link funktioniert nicht",
        [
            "Er ist vielleicht abgelaufen, wurde schon benutzt oder durch eine neuere E-Mail ersetzt.",
            "Wenn er an Sie ging und Sie die Einrichtung noch nicht abgeschlossen haben, schicken wir Ihnen einen neuen Link. Er geht nur an die Adresse, die wir von Ihnen haben.",
        ],
    ),
    renew_button: "Neuen Link schicken",
    forbidden: (
        "Bitte neu beginnen",
        "Dieses Formular ist abgelaufen oder kam nicht von dieser Seite. Öffnen Sie den Link aus Ihrer E-Mail erneut.",
    ),
    error: (
        "Etwas ist schiefgegangen",
        "Es wurde nichts geändert. Bitte versuchen Sie es in ein paar Minuten erneut.",
    ),
    done: "Alles erledigt",
    done_both: "Ihr Portal-Passwort und Ihre Sprachbox-PIN sind gespeichert. Sie können diese Seite schließen.",
    done_password: "Ihr Portal-Passwort ist gespeichert. Sie können diese Seite schließen.",
    check: (
        "Bitte sehen Sie in Ihre E-Mails",
        "Wenn dieser Link an jemanden ging, der die Einrichtung noch nicht abgeschlossen hat, ist ein neuer Link an die hinterlegte Adresse unterwegs. Frühere Links funktionieren nicht mehr.",
    ),
    password_mismatch: "Die beiden Passwörter sind nicht gleich.",
    pin_mismatch: "Die beiden PINs sind nicht gleich.",
};

pub(super) fn words(lang: &str) -> &'static Words {
    match crate::model::language(Some(lang)) {
        "de" => &DE,
        _ => &EN,
    }
}

/// For pages without a user (dead links, errors): the browser's first
/// language with templates, English otherwise. Says nothing about accounts.
pub(super) fn browser_words(headers: &HeaderMap) -> &'static Words {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .filter_map(|t| {
            let tag = t.split(';').next()?.trim();
            let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
            crate::model::LANGUAGES
                .iter()
                .find(|l| **l == primary)
                .copied()
        })
        .next()
        .map_or(&EN, words)
}
