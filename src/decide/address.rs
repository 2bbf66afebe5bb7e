//! Where HAProxy reaches an instance: the pool's address source applied to what the provider
//! reported, refused unless it is a plain host and a real port (providers print what they like).

use crate::config::{AddressSource, PoolConfig};
use crate::model::{Endpoint, Instance, Unusable};

/// Where HAProxy (and the readiness probe) reaches an instance.
pub(crate) fn endpoint(pool: &PoolConfig, instance: &Instance) -> Result<Endpoint, Unusable> {
    match &pool.address {
        AddressSource::PrivateIp => match &instance.private_ip {
            Some(ip) => plain_host(ip, instance.port.unwrap_or(pool.port)),
            None => Err(Unusable::NotYet("has no private IP address yet".to_owned())),
        },
        AddressSource::PublicIp => match &instance.public_ip {
            Some(ip) => plain_host(ip, instance.port.unwrap_or(pool.port)),
            None => Err(Unusable::NotYet("has no public IP address".to_owned())),
        },
        AddressSource::Tag(key) => match instance.tags.get(key) {
            Some(value) => parse_host_port(value).ok_or_else(|| {
                Unusable::Bad(format!(
                    "has tag `{key}` = {value:?}, which is not a plain `host:port` address ({})",
                    host_port_problem(value)
                ))
            }),
            None => Err(Unusable::NotYet(format!("has no `{key}` tag"))),
        },
    }
}

/// An address a provider reported (exec commands print what they like): a plain IP address or
/// host name, or the instance is left out.
fn plain_host(host: &str, port: u16) -> Result<Endpoint, Unusable> {
    if port == 0 {
        return Err(Unusable::Bad(
            "has port 0, which is not a port a server listens on".to_owned(),
        ));
    }
    if host.parse::<core::net::Ipv6Addr>().is_ok() {
        // `::1:8080` would be ambiguous in `address:port`.
        Ok(Endpoint {
            host: format!("[{host}]"),
            port,
        })
    } else if is_plain_host(host) {
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    } else {
        Err(Unusable::Bad(format!(
            "has address {host:?}, which is not a plain IP address or host name"
        )))
    }
}

/// Parses `host:port` (or `[v6]:port`) where host is an IP address or a DNS name.
pub(crate) fn parse_host_port(value: &str) -> Option<Endpoint> {
    let (host, port) = value.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<core::net::Ipv6Addr>().is_ok(),
        None => is_plain_host(host),
    };
    valid.then(|| Endpoint {
        host: host.to_owned(),
        port,
    })
}

/// What is wrong with a `host:port` that [`parse_host_port`] refused, in words.
pub(crate) fn host_port_problem(value: &str) -> String {
    let Some((_, port)) = value.rsplit_once(':') else {
        return "no `:PORT`".to_owned();
    };
    match port.parse::<u64>() {
        Ok(number) if !(1..=65535).contains(&number) => {
            format!("port {number} is not between 1 and 65535")
        }
        Ok(_) => "the host is not a plain IP address or host name".to_owned(),
        Err(_) => format!("{port:?} is not a port number"),
    }
}

/// An IPv4 or IPv6 address, or a host name as DNS allows it (RFC 1123: dot-separated labels of
/// 1 to 63 letters, digits and inner hyphens, at most 253 characters, the last label not all
/// digits), so that neither HAProxy nor a resolver reads it as anything else (`-x`, `a..b` and
/// `1.2.3.4.5` are not host names).
fn is_plain_host(host: &str) -> bool {
    if host.parse::<core::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    !host.is_empty()
        && host.len() <= 253
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|last| !last.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn host_port_values_are_ip_addresses_or_dns_names() {
        assert_eq!(parse_host_port("[::1]:80"), Some(endpoint("[::1]", 80)));
        // Issue 10, class 4 (hostile trial): host names as DNS allows them.
        for bad in [
            "-x:80",
            "a..b:80",
            "1.2.3.4.5:80",
            "x-:80",
            "a_b:80",
            "a%b:80",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
        for good in [
            "web-1.internal:80",
            "localhost:80",
            "host.example.:80",
            "10.0.0.1:80",
        ] {
            assert!(parse_host_port(good).is_some(), "{good}");
        }
        assert_eq!(
            parse_host_port("web-1.internal:8080"),
            Some(endpoint("web-1.internal", 8080))
        );
    }
}
