//! Text from outside (a command's output, a hand-edited file, an instance id) made safe to show
//! on the operator's terminal. Pure: no I/O.

/// `text` with control characters other than newlines and tabs (C0, DEL, C1) and Unicode's
/// bidi and format controls escaped (`\u{1b}`, `\u{202e}`): text from outside (a command's
/// output, a hand-edited file) must not drive the operator's terminal or reorder what it shows.
pub fn printable(text: &str) -> String {
    escaped_except(text, &['\n', '\t'])
}

/// `text` with every control and format character escaped but those in `keep`.
pub fn escaped_except(text: &str, keep: &[char]) -> String {
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

/// An instance id as it may be shown on a terminal: as is when it is plain, else quoted with
/// its control and format characters escaped (an id could carry an escape sequence that retitles
/// or clears the operator's terminal).
pub fn shown(id: &str) -> String {
    if id
        .chars()
        .all(|c| !c.is_control() && !crate::model::is_format_character(c))
    {
        id.to_owned()
    } else {
        format!("{id:?}")
    }
}
