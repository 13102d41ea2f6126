//! The names tenants and apps may take. Tenant ids end up in database names, broker vhosts
//! and etcd keys, so they are kept to a set of characters every one of those accepts.

use std::fmt;

/// A refused name, with the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    /// What was named: "tenant id", "app name".
    pub what: &'static str,
    /// The refused value.
    pub value: String,
    /// The rule.
    pub rule: &'static str,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is not allowed: {}",
            self.what, self.value, self.rule
        )
    }
}

impl std::error::Error for BadName {}

const TENANT_RULE: &str =
    "use 2-32 characters: lowercase letters, digits and '-', starting with a letter";
const APP_RULE: &str =
    "use 1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter";

/// Whether MongoDB accepts `name` as a database name: 1-38 characters, none of `/\. "$`
/// or NUL. (Profiles additionally keep tenants out of `admin`, `local` and `config`.)
pub fn is_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 38
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
}

/// The database a tenant's documents go to on the shared coredms when its profile names
/// none: `tenant_<id>`, with the id's '-' as '_' (tenant ids use no other character MongoDB
/// or its tools dislike).
pub fn tenant_database(tenant: &str) -> String {
    format!("tenant_{}", tenant.replace('-', "_"))
}

const COLLECTION_RULE: &str = "use 1-120 characters: letters, digits, '_' and '-', in segments joined by \
     single dots, starting with a letter or '_' and not with 'system.'";

/// Checks a collection name against MongoDB's naming rules, tightened to what every driver
/// and tool handles: no empty segment (`a..b`, `x.`, `.x`), no `$`, NUL or other punctuation,
/// and nothing in the reserved `system.` namespace.
pub fn collection_name(value: &str) -> Result<(), BadName> {
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let ok = (1..=120).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !value.starts_with("system.")
        && value.split('.').all(segment_ok);
    if ok {
        Ok(())
    } else {
        Err(BadName {
            what: "collection",
            value: value.to_owned(),
            rule: COLLECTION_RULE,
        })
    }
}

/// Checks a tenant id.
pub fn tenant_id(value: &str) -> Result<(), BadName> {
    check(value, "tenant id", TENANT_RULE, 2, 32, |c| c == '-')
}

/// Checks an app name.
pub fn app_name(value: &str) -> Result<(), BadName> {
    check(value, "app name", APP_RULE, 1, 64, |c| c == '-' || c == '_')
}

/// Checks a sandbox preset's name (it travels in upload queries and version records).
pub fn preset_name(value: &str) -> Result<(), BadName> {
    check(value, "preset name", APP_RULE, 1, 64, |c| {
        c == '-' || c == '_'
    })
}

/// Checks a stream name (also its queue's name in the tenant's vhost).
pub fn stream_name(value: &str) -> Result<(), BadName> {
    check(value, "stream name", APP_RULE, 1, 64, |c| {
        c == '-' || c == '_'
    })
}

fn check(
    value: &str,
    what: &'static str,
    rule: &'static str,
    min: usize,
    max: usize,
    extra: impl Fn(char) -> bool,
) -> Result<(), BadName> {
    let ok = (min..=max).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra(c));
    if ok {
        Ok(())
    } else {
        Err(BadName {
            what,
            value: value.to_owned(),
            rule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for good in ["acme", "a1", "acme-eu-2"] {
            tenant_id(good).unwrap();
        }
        for bad in [
            "",
            "a",
            "Acme",
            "1acme",
            "acme_eu",
            "acme.eu",
            "ac/me",
            &"a".repeat(33),
        ] {
            let error = tenant_id(bad).unwrap_err();
            assert!(error.to_string().contains("tenant id"), "{error}");
        }
    }

    #[test]
    fn collection_names_follow_mongodb_rules() {
        for good in ["orders", "orders.2026", "_tmp", "a-b_c.d", &"x".repeat(120)] {
            collection_name(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "x.",
            "a..b",
            "system.users",
            "a$b",
            "a b",
            "a\0b",
            "1orders",
            "-x",
            &"x".repeat(121),
        ] {
            let error = collection_name(bad).unwrap_err();
            assert!(error.to_string().contains("collection"), "{error}");
        }
    }

    #[test]
    fn app_names() {
        for good in ["orders", "o", "orders_v2-eu"] {
            app_name(good).unwrap();
        }
        for bad in ["", "Orders", "_x", "a b", "a.b", "../x", &"a".repeat(65)] {
            app_name(bad).unwrap_err();
        }
    }
}
