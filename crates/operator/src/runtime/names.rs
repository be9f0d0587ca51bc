//! Kubernetes name rules the families check user input against before it becomes an object
//! name, a namespace or part of a URL.

/// Whether `s` is a DNS label (RFC 1123): 1 to 63 lowercase letters, digits and '-', starting
/// and ending with a letter or digit. Namespaces and Service names must be one.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a valid label value: empty, or at most 63 letters, digits, '-', '_' and
/// '.', starting and ending with a letter or digit. A label selector naming another value is
/// refused by the API server.
pub fn is_label_value(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(s.chars().next())
        && edge(s.chars().last())
}

/// Whether `s` is a DNS subdomain (RFC 1123): at most 253 characters of DNS labels joined by
/// '.'. Most object names must be one.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns_label("weather-agent"));
        assert!(is_dns_label(&"a".repeat(63)));
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        assert!(
            is_label_value("") && is_label_value("Gw_app.1-x") && is_label_value(&"a".repeat(63))
        );
        for bad in ["-a", "a-", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        assert!(is_dns_subdomain("agents.v2"));
        for bad in ["a..b", ".a", "a.", "Agents", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
    }
}
