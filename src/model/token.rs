//! The token rule for values written into haproxy.cfg or shown on a terminal: the same rule
//! for cloud data, exec output and config values.

/// True if `value` can be written into haproxy.cfg as one word without quoting: nothing that
/// HAProxy's config parser treats specially — whitespace (word breaks), `#` (comments), quotes
/// and backslashes (quoting, escapes), `$` (environment variables: `${AWS_SECRET_ACCESS_KEY}`
/// would be expanded into the config, its errors and DNS queries), `%` (`%[src]` is a sample
/// expression in log formats and headers), braces (anonymous ACLs) — and no control character
/// nor Unicode format or bidirectional control (text that reads differently than it parses).
pub(crate) fn is_haproxy_token(value: &str) -> bool {
    value.chars().all(|c| {
        !c.is_whitespace()
            && !c.is_control()
            && !matches!(c, '#' | '"' | '\'' | '\\' | '$' | '%' | '{' | '}')
            && !is_format_character(c)
    })
}

/// Unicode format characters (category Cf) that can hide or reorder text: zero-width ones,
/// bidirectional embeddings, overrides and isolates, the byte-order mark, soft hyphen.
pub fn is_format_character(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
    )
}
