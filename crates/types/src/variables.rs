//! Nomad Variables' rules (pure): which paths and items a variable may have, and the one
//! sentence for each mistake. The servers check them before sealing a variable.

use crate::v1::Variable;

/// The longest path Nomad accepts.
pub const MAX_PATH: usize = 128;

/// The most a variable's items may weigh in all (keys and values), as in Nomad.
pub const MAX_SIZE: usize = 64 * 1024;

/// Why a variable cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("invalid variable path {0:?}: use 1 to 128 letters, digits, '-', '_', '~' and '/'")]
    Path(String),
    #[error("invalid variable path {0:?}: \"nomad/\" is reserved, except for \"nomad/jobs\" and paths under it")]
    Reserved(String),
    #[error("variable {0:?} has no items: a variable holds at least one key=value")]
    Empty(String),
    #[error("variable {path:?} has an item with an empty key")]
    EmptyKey { path: String },
    #[error("variable {path:?} is {size} bytes; variables are limited to 64 KiB in all")]
    TooLarge { path: String, size: usize },
}

/// Checks a variable's path (Nomad's characters and length; `nomad/` is reserved but for
/// `nomad/jobs`).
pub fn check_path(path: &str) -> Result<(), VariableError> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '~' | '/'));
    if !ok {
        return Err(VariableError::Path(crate::limits::shown(path)));
    }
    let reserved = path == "nomad" || path.starts_with("nomad/");
    if reserved && path != "nomad/jobs" && !path.starts_with("nomad/jobs/") {
        return Err(VariableError::Reserved(path.to_string()));
    }
    Ok(())
}

/// Checks a variable before it is written: its path, at least one item, no empty key, and the
/// size of its items.
pub fn check(v: &Variable) -> Result<(), VariableError> {
    check_path(&v.path)?;
    if v.items.is_empty() {
        return Err(VariableError::Empty(v.path.clone()));
    }
    if v.items.keys().any(String::is_empty) {
        return Err(VariableError::EmptyKey {
            path: v.path.clone(),
        });
    }
    let size: usize = v.items.iter().map(|(k, val)| k.len() + val.len()).sum();
    if size > MAX_SIZE {
        return Err(VariableError::TooLarge {
            path: v.path.clone(),
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(path: &str, items: &[(&str, &str)]) -> Variable {
        Variable {
            namespace: "default".into(),
            path: path.into(),
            items: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Variable::default()
        }
    }

    #[test]
    fn paths_follow_nomads_rules() {
        for good in [
            "a",
            "project/db/creds",
            "nomad/jobs",
            "nomad/jobs/web/g",
            "a~b_c-d",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "a/../b.c", "é", &"x".repeat(129)] {
            assert!(
                matches!(check_path(bad), Err(VariableError::Path(_))),
                "{bad}"
            );
        }
        for reserved in ["nomad", "nomad/other", "nomad/jobsx"] {
            assert!(
                matches!(check_path(reserved), Err(VariableError::Reserved(_))),
                "{reserved}"
            );
        }
    }

    #[test]
    fn items_must_be_there_named_and_small() {
        assert_eq!(check(&var("a", &[("k", "v")])), Ok(()));
        assert_eq!(
            check(&var("a", &[])).unwrap_err().to_string(),
            "variable \"a\" has no items: a variable holds at least one key=value"
        );
        assert!(matches!(
            check(&var("a", &[("", "v")])),
            Err(VariableError::EmptyKey { .. })
        ));
        let big = "x".repeat(MAX_SIZE);
        assert!(matches!(
            check(&var("a", &[("k", &big)])),
            Err(VariableError::TooLarge { size, .. }) if size == MAX_SIZE + 1
        ));
    }
}
