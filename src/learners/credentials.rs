//! Validation of what users type when they register or sign in.

use crate::error::{ApiError, ApiResult};

/// A plausible email: one `@`, a dotted domain, at most 254 characters.
pub fn validate_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim();
    let invalid = || ApiError::bad_input("`email` must be a valid address such as ada@example.org");
    if email.is_empty()
        || email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.contains('@') || local.len() > 64 {
        return Err(invalid());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err(invalid());
    }
    Ok(email.to_string())
}

/// 3–32 characters of letters, digits, `_`, `.`, `-`.
pub fn validate_username(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    let ok = (3..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ApiError::bad_input(
            "`username` must be 3 to 32 letters, digits, '_', '.' or '-'",
        ))
    }
}

/// At least 10 characters; at most 1024, so nobody makes us hash megabytes.
pub fn validate_password(raw: &str) -> ApiResult<()> {
    match raw.chars().count() {
        n if n < 10 => Err(ApiError::bad_input(
            "`password` must be at least 10 characters",
        )),
        n if n > 1024 => Err(ApiError::bad_input(
            "`password` may be at most 1024 characters",
        )),
        _ => Ok(()),
    }
}

/// An optional display name, trimmed, at most 100 characters.
pub fn validate_display_name(raw: Option<String>) -> ApiResult<Option<String>> {
    let name = raw.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control))
    {
        return Err(ApiError::bad_input(
            "`displayName` must be at most 100 printable characters",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass_and_others_are_bad_input() {
        assert_eq!(
            validate_email(" Ada@Example.org ").unwrap(),
            "Ada@Example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a@b@c.org",
            "ada@.org",
            "a b@c.org",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@example.org", "a".repeat(250))).is_err());
    }

    #[test]
    fn usernames_are_3_to_32_safe_characters() {
        assert!(validate_username("ada_l.ove-1").is_ok());
        for bad in ["ab", &"a".repeat(33), "ada love", "ada$", "{\"$gt\":\"\"}"] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_ten_characters() {
        assert!(validate_password("123456789").is_err());
        assert!(validate_password("1234567890").is_ok());
    }
}
