//! Which servers each backend of an installed haproxy.cfg names (its text, read by the shell).
//!
//! Pure text inspection, used for the empty-backend guard (invariant 7) and to describe membership
//! changes. It understands just enough of the format: section keywords start a section, and
//! `server NAME ...` lines inside a `backend` or `listen` section name its servers.

/// Keywords that open a section in haproxy.cfg.
pub(crate) const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "cache",
    "mailers",
    "crt-store",
    "traces",
];

/// The names of the servers of `backend` in config `text`, in file order.
pub fn backend_servers(text: &str, backend: &str) -> Vec<String> {
    let mut in_backend = false;
    let mut servers = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        if SECTIONS.contains(&keyword) {
            in_backend = matches!(keyword, "backend" | "listen") && words.next() == Some(backend);
        } else if in_backend
            && keyword == "server"
            && let Some(name) = words.next()
        {
            servers.push(name.to_owned());
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_servers_of_one_backend() {
        let text = "\
global
    stats socket /run/haproxy/admin.sock
frontend http
    bind :80
    default_backend web
backend web
    server i-1 10.0.0.1:80 check
    # server i-commented 10.0.0.9:80
    server i-2 10.0.0.2:80 check # trailing
backend api
    server i-3 10.0.0.3:80
listen web2
    server i-4 10.0.0.4:80
";
        assert_eq!(backend_servers(text, "web"), ["i-1", "i-2"]);
        assert_eq!(backend_servers(text, "api"), ["i-3"]);
        assert_eq!(backend_servers(text, "web2"), ["i-4"]);
        assert!(backend_servers(text, "missing").is_empty());
        assert!(backend_servers("", "web").is_empty());
    }
}
