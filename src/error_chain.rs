//! A leaf helper: an error and its causes as one line. Pure; imports nothing of the crate, so
//! every layer may use it.

/// An error and its causes on one line, joined by `: ` (for logs and notifications).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
