//! Deterministic names of everything generated for a session, and the name-length check.

/// Longest name of a Service or a label value.
pub const DNS_LABEL_MAX: usize = 63;
/// Longest name of most other objects.
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// Runner Job `<name>-job`.
pub fn job(session: &str) -> String {
    format!("{session}-job")
}

/// Service `session-<name>` (the backend addresses the runner through it).
pub fn service(session: &str) -> String {
    format!("session-{session}")
}

/// Per-session `ServiceAccount` `ambient-session-<name>`.
pub fn service_account(session: &str) -> String {
    format!("ambient-session-{session}")
}

/// Per-session Role `ambient-session-<name>-role`.
pub fn role(session: &str) -> String {
    format!("ambient-session-{session}-role")
}

/// Per-session `RoleBinding` `ambient-session-<name>-rb`.
pub fn role_binding(session: &str) -> String {
    format!("ambient-session-{session}-rb")
}

/// Runner-token Secret `ambient-runner-token-<name>`.
pub fn token_secret(session: &str) -> String {
    format!("ambient-runner-token-{session}")
}

/// Checks that every generated name and label fits Kubernetes' limits: no dots (the Service
/// name is a DNS label) and short enough. The message names the object that would not fit
/// and what the session name may be.
pub fn check(session: &str) -> Result<(), String> {
    // The API server accepts dots in a custom resource's name, but the Service
    // `session-<name>` must be a DNS-1035 label.
    if session.contains('.') {
        return Err(format!(
            "metadata.name {session:?} contains '.': the Service name {:?} must be a DNS label (lowercase letters, digits and '-'); use a session name without dots",
            service(session)
        ));
    }
    let limited = [
        ("label agentic-session", session.to_owned(), DNS_LABEL_MAX),
        ("Service", service(session), DNS_LABEL_MAX),
        ("Job", job(session), DNS_LABEL_MAX),
        ("Role", role(session), DNS_SUBDOMAIN_MAX),
        ("Secret", token_secret(session), DNS_SUBDOMAIN_MAX),
    ];
    for (what, name, max) in limited {
        if name.len() > max {
            let overhead = name.len() - session.len();
            return Err(format!(
                "metadata.name {session:?} is too long: the {what} name {name:?} would have {} characters, Kubernetes allows at most {max}; use a session name of at most {} characters",
                name.len(),
                max - overhead
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic() {
        assert_eq!(job("s1"), "s1-job");
        assert_eq!(service("s1"), "session-s1");
        assert_eq!(service_account("s1"), "ambient-session-s1");
        assert_eq!(role("s1"), "ambient-session-s1-role");
        assert_eq!(role_binding("s1"), "ambient-session-s1-rb");
        assert_eq!(token_secret("s1"), "ambient-runner-token-s1");
    }

    #[test]
    fn limits() {
        let ok = "a".repeat(55);
        assert!(check(&ok).is_ok());
        let long = "a".repeat(56);
        let err = check(&long).unwrap_err();
        assert!(err.contains("Service"), "{err}");
        assert!(err.contains("at most 55 characters"), "{err}");
        assert!(err.contains("64 characters"), "{err}");
        let dotted = check("fix.login").unwrap_err();
        assert!(dotted.contains("\"session-fix.login\""), "{dotted}");
        assert!(dotted.contains("without dots"), "{dotted}");
        let very_long = "a".repeat(64);
        let err = check(&very_long).unwrap_err();
        assert!(err.contains("label agentic-session"), "{err}");
    }
}
