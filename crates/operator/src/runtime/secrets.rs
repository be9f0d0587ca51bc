//! Reading values out of Secrets the operator does not own (connection Secrets, settings
//! Secrets), whichever of `data` and `stringData` their writer used.

use k8s_openapi::api::core::v1::Secret;

/// `key` of `secret` as text: from `data` (lossy UTF-8), else from `stringData`.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_first_then_string_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "data": {"a": "eA=="},
            "stringData": {"a": "ignored", "b": "y"}
        }))
        .unwrap();
        assert_eq!(text(&secret, "a").as_deref(), Some("x"));
        assert_eq!(text(&secret, "b").as_deref(), Some("y"));
        assert_eq!(text(&secret, "c"), None);
    }
}
