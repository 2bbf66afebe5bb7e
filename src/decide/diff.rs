//! What changes in haproxy.cfg, for people: a unified diff from the installed file to the
//! rendered one, with the installed side made printable (it may hold anything a hand edit put
//! there).

/// The unified diff (3 lines of context) from `installed` to `rendered`; `label` names the file.
pub fn unified(installed: &str, rendered: &str, label: &str) -> String {
    crate::model::text::printable(
        &similar::TextDiff::from_lines(installed, rendered)
            .unified_diff()
            .context_radius(3)
            .header(label, &format!("{label} (rendered)"))
            .to_string(),
    )
}
