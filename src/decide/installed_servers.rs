//! Which servers each backend of an installed haproxy.cfg names (its text, read by the shell),
//! and the walk through a haproxy.cfg's sections that it and [`crate::decide::runtime`] share.
//!
//! Pure text inspection, used for the empty-backend guard (invariant 7), to describe membership
//! changes and to compare two configs. It understands just enough of the format: section
//! keywords start a section, and `server NAME ...` lines inside a `backend` or `listen` section
//! name its servers.

/// Keywords that open a section in haproxy.cfg.
const SECTIONS: &[&str] = &[
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

/// One meaningful line of a haproxy.cfg (not blank, not only a comment), and the section it is
/// in.
#[derive(Debug, Clone, Copy)]
pub struct ConfigLine<'a> {
    /// The line, trimmed, comment included.
    pub text: &'a str,
    pub keyword: &'a str,
    /// The keyword and name of the section it is in (or opens); empty before the first.
    pub section: &'a str,
    pub name: &'a str,
    /// It opens that section.
    pub opens: bool,
}

impl<'a> ConfigLine<'a> {
    /// Its words, without a trailing comment.
    pub fn words(self) -> impl Iterator<Item = &'a str> + Clone {
        self.text
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
    }

    /// The backend (or listen section) it is a line of, if any.
    pub fn backend(self) -> Option<&'a str> {
        matches!(self.section, "backend" | "listen").then_some(self.name)
    }

    /// `server NAME ADDRESS ...` inside a backend: (backend, name, address, options).
    pub fn server(self) -> Option<(&'a str, &'a str, &'a str, impl Iterator<Item = &'a str>)> {
        let backend = self
            .backend()
            .filter(|_| !self.opens && self.keyword == "server")?;
        let mut words = self.words().skip(1);
        let (name, address) = (words.next()?, words.next()?);
        Some((backend, name, address, words))
    }
}

/// The meaningful lines of config `text`, each with its section.
pub fn config_lines(text: &str) -> impl Iterator<Item = ConfigLine<'_>> {
    let (mut section, mut name) = ("", "");
    text.lines().filter_map(move |line| {
        let text = line.trim();
        let mut words = text.split('#').next()?.split_whitespace();
        let keyword = words.next()?;
        let opens = SECTIONS.contains(&keyword);
        if opens {
            (section, name) = (keyword, words.next().unwrap_or_default());
        }
        Some(ConfigLine {
            text,
            keyword,
            section,
            name,
            opens,
        })
    })
}

/// The names of the servers of `backend` in config `text`, in file order.
pub(crate) fn backend_servers(text: &str, backend: &str) -> Vec<String> {
    config_lines(text)
        .filter_map(ConfigLine::server)
        .filter(|(of, ..)| *of == backend)
        .map(|(_, name, ..)| name.to_owned())
        .collect()
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
