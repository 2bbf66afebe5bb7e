//! Text from outside (a command's output, a hand-edited file, an instance id) made safe to show
//! on the operator's terminal. Pure: no I/O.

/// `text` with control characters other than newlines and tabs (C0, DEL, C1) and Unicode's
/// bidi and format controls escaped (`\u{1b}`, `\u{202e}`): text from outside (a command's
/// output, a hand-edited file) must not drive the operator's terminal or reorder what it shows.
pub(crate) fn printable(text: &str) -> String {
    escaped_except(text, &['\n', '\t'])
}

/// `text` with every control and format character escaped but those in `keep`.
pub(crate) fn escaped_except(text: &str, keep: &[char]) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> =
                if (c.is_control() || crate::model::is_format_character(c)) && !keep.contains(&c) {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
            escaped
        })
        .collect()
}

/// A JSON document with every character [`printable`] escapes written as a JSON `\u` escape
/// of four hex digits (a surrogate pair past U+FFFF): the same document to a parser, nothing a
/// terminal acts on. serde_json escapes C0 itself, but leaves DEL, C1 and Unicode's format
/// characters raw. Such characters only ever stand inside strings in serde_json's output; its
/// newlines between tokens are kept.
pub(crate) fn json_printable(json: &str) -> String {
    let mut safe = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && (c.is_control() || crate::model::is_format_character(c)) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                safe.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            safe.push(c);
        }
    }
    safe
}

/// An argv as a shell would read it back (`sh -c 'a b'`), for messages.
pub(crate) fn shell_words(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// An instance id as it may be shown on a terminal: as is when it is plain, else quoted with
/// its control and format characters escaped (an id could carry an escape sequence that retitles
/// or clears the operator's terminal).
pub(crate) fn shown(id: &str) -> String {
    if id
        .chars()
        .all(|c| !c.is_control() && !crate::model::is_format_character(c))
    {
        id.to_owned()
    } else {
        format!("{id:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing a terminal acts on: no control character but the newline, no format character.
    fn inert(text: &str) -> bool {
        text.chars()
            .all(|c| c == '\n' || !(c.is_control() || crate::model::is_format_character(c)))
    }

    #[test]
    fn json_keeps_the_document_and_escapes_what_a_terminal_acts_on() {
        let value = serde_json::json!({
            "id": "i-1\u{1b}]0;owned\u{7}",
            "text": "a\u{7f}b\u{85}c\u{202e}d\u{2066}e\u{feff}f\u{e0001}g",
            "plain": "ünïcode ✓",
        });
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let safe = json_printable(&pretty);
        assert!(inert(&safe), "{safe}");
        assert!(
            safe.contains("\\u007f") && safe.contains("\\u202e"),
            "{safe}"
        );
        // Past U+FFFF, a surrogate pair.
        assert!(safe.contains("\\udb40\\udc01"), "{safe}");
        assert!(safe.contains("ünïcode ✓"), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    proptest::proptest! {
        #[test]
        fn any_string_survives_json_printable(text in "\\PC*|[\\x00-\\x{9f}\\u{200b}-\\u{206f}\\u{feff}]*") {
            let json = serde_json::to_string(&serde_json::json!({ "text": text })).unwrap();
            let safe = json_printable(&json);
            proptest::prop_assert!(inert(&safe));
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            proptest::prop_assert_eq!(back["text"].as_str().unwrap(), text.as_str());
        }

        #[test]
        fn printable_text_is_inert(text in "[\\x00-\\x{9f}\\u{200b}-\\u{206f}a-z]*") {
            proptest::prop_assert!(inert(&printable(&text).replace('\t', " ")));
        }
    }
}
