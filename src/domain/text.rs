//! Texts users show each other besides messages: a name or title is one line of printable
//! text; a longer text (a comment, a report's reason) may break lines but carries no other
//! control character (no terminal escapes, no invisible C1 codes) into other users' screens.

use super::Error;

/// A name or title: trimmed, 1 to `max` characters, no control character at all.
pub fn label(raw: &str, what: &str, max: usize) -> Result<String, Error> {
    let label = raw.trim();
    if label.is_empty() || label.chars().count() > max {
        return Err(Error::bad_request(format!("{what} must be 1 to {max} characters")));
    }
    if label.chars().any(char::is_control) {
        return Err(Error::bad_request(format!("{what} must not contain control characters")));
    }
    Ok(label.to_owned())
}

/// Refuses a control character other than a line break (LF or CR) or a tab in `text`.
pub fn lines_only(text: &str, what: &str) -> Result<(), Error> {
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(Error::bad_request(format!("{what} must not contain control characters but line breaks and tabs")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_one_printable_line() {
        assert_eq!(label("  Q&A  ", "title", 10).unwrap(), "Q&A");
        assert!(label("   ", "title", 10).is_err());
        assert!(label("abcdefghijk", "title", 10).is_err());
        assert!(label(&"é".repeat(10), "title", 10).is_ok());
        for bad in ["a\nb", "a\u{7}b", "\u{1b}[2Jx", "a\u{85}b", "a\u{7f}b"] {
            assert!(label(bad, "title", 10).is_err(), "{bad:?}");
        }
        assert!(label("a\u{202e}b", "title", 10).is_ok(), "format characters are not controls");
    }

    #[test]
    fn longer_texts_may_break_lines() {
        assert!(lines_only("one\ntwo\tthree\r\nfour", "text").is_ok());
        for bad in ["a\u{8}b", "\u{1b}[2J", "a\u{85}b", "a\u{0}b"] {
            assert!(lines_only(bad, "text").is_err(), "{bad:?}");
        }
    }
}
