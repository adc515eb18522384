//! Constraint operators (Nomad's): which exist, whether an operand is well formed, and whether
//! a node's resolved attribute satisfies one. Resolving `${attr.x}`-style names against a node
//! and the operators that count allocations (`distinct_hosts`, `distinct_property`) belong to
//! the scheduler.

use std::cmp::Ordering;

use regex::Regex;
use semver::Version;

/// Every operator a `constraint` may use.
pub const OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "distinct_hosts",
    "distinct_property",
    "is_set",
    "is_not_set",
];

/// The operators a `constraint` block may also write as an attribute of their own
/// (`regexp = "..."` for `operator = "regexp"` and `value = "..."`), as Nomad allows.
pub const SHORTHANDS: &[&str] = &[
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
];

/// Whether `value` is a usable operand for `operator` (checked when a job is submitted).
pub fn check_operand(operator: &str, value: &str) -> Result<(), String> {
    match operator {
        "regexp" => Regex::new(value)
            .map(|_| ())
            .map_err(|e| format!("regexp {value:?} does not compile: {}", one_line(&e))),
        "version" | "semver" => parse_requirement(value, operator == "semver")
            .map(|_| ())
            .map_err(|e| format!("{operator} constraint {value:?}: {e}")),
        "distinct_property" if !value.is_empty() => match value.parse::<u32>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!(
                "distinct_property limit {value:?} must be a whole number of at least 1"
            )),
        },
        _ => Ok(()),
    }
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// Whether a resolved attribute (`None` when the node lacks it) satisfies `operator value`.
/// `regex` is the compiled `value` for `regexp` (callers cache it); it is compiled here when
/// not given.
pub fn holds(operator: &str, left: Option<&str>, right: &str, regex: Option<&Regex>) -> bool {
    let cmp = |l: &str| match (l.parse::<f64>(), right.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(l.cmp(right)),
    };
    let set = |s: &str| -> Vec<String> { s.split(',').map(|x| x.trim().to_string()).collect() };
    match (operator, left) {
        ("is_set", l) => l.is_some(),
        ("is_not_set", l) => l.is_none(),
        (_, None) => false,
        ("=" | "==" | "is", Some(l)) => l == right,
        ("!=" | "not", Some(l)) => l != right,
        (">", Some(l)) => cmp(l) == Some(Ordering::Greater),
        (">=", Some(l)) => matches!(cmp(l), Some(Ordering::Greater | Ordering::Equal)),
        ("<", Some(l)) => cmp(l) == Some(Ordering::Less),
        ("<=", Some(l)) => matches!(cmp(l), Some(Ordering::Less | Ordering::Equal)),
        ("regexp", Some(l)) => match regex {
            Some(r) => r.is_match(l),
            None => Regex::new(right).is_ok_and(|r| r.is_match(l)),
        },
        ("version" | "semver", Some(l)) => {
            let strict = operator == "semver";
            match (parse_version(l, strict), parse_requirement(right, strict)) {
                (Some(v), Ok(req)) => req.iter().all(|(op, want)| op.matches(&v, want)),
                _ => false,
            }
        }
        ("set_contains" | "set_contains_all", Some(l)) => {
            let have = set(l);
            set(right).iter().all(|w| have.contains(w))
        }
        ("set_contains_any", Some(l)) => {
            let have = set(l);
            set(right).iter().any(|w| have.contains(w))
        }
        _ => false,
    }
}

/// A comparison in a version requirement (`>= 1.2, < 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~>`: at least this version, below the next release of its second-to-last part.
    Pessimistic(usize),
}

impl Op {
    fn matches(self, v: &Version, want: &Version) -> bool {
        match self {
            Op::Eq => v == want,
            Op::Ne => v != want,
            Op::Gt => v > want,
            Op::Ge => v >= want,
            Op::Lt => v < want,
            Op::Le => v <= want,
            Op::Pessimistic(parts) => {
                let upper = match parts {
                    0..=2 => Version::new(want.major + 1, 0, 0),
                    _ => Version::new(want.major, want.minor + 1, 0),
                };
                v >= want && *v < upper
            }
        }
    }
}

fn parse_requirement(text: &str, strict: bool) -> Result<Vec<(Op, Version)>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (op, rest) = [
            ("~>", Op::Pessimistic(0)),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(p, op)| part.strip_prefix(p).map(|r| (*op, r.trim())))
        .unwrap_or((Op::Eq, part));
        let op = match op {
            Op::Pessimistic(_) => Op::Pessimistic(rest.split('.').count()),
            other => other,
        };
        let v = parse_version(rest, strict).ok_or_else(|| format!("{rest:?} is not a version"))?;
        out.push((op, v));
    }
    Ok(out)
}

/// A version: strict semver for `semver`; for `version`, also `1`, `1.2`, `v1.2.3` and a
/// suffix such as `5.15.0-91-generic`.
fn parse_version(text: &str, strict: bool) -> Option<Version> {
    let text = text.trim();
    if strict {
        return Version::parse(text).ok();
    }
    let text = text.strip_prefix('v').unwrap_or(text);
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (core, rest) = text.split_at(end);
    let nums: Vec<u64> = core
        .trim_end_matches('.')
        .split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    if nums.is_empty() || nums.len() > 3 {
        return None;
    }
    let padded = format!(
        "{}.{}.{}",
        nums[0],
        nums.get(1).unwrap_or(&0),
        nums.get(2).unwrap_or(&0)
    );
    let rest = rest.trim_start_matches(['-', '+']);
    Version::parse(&padded).ok().map(|mut v| {
        if let Ok(pre) = semver::Prerelease::new(rest) {
            v.pre = pre;
        }
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_and_sets() {
        assert!(holds("=", Some("linux"), "linux", None));
        assert!(!holds("=", None, "linux", None));
        assert!(holds("!=", Some("linux"), "windows", None));
        assert!(
            holds(">", Some("10"), "9", None),
            "numbers compare as numbers"
        );
        assert!(holds("<", Some("abc"), "abd", None));
        assert!(holds("is_set", Some(""), "", None));
        assert!(holds("is_not_set", None, "", None));
        assert!(holds("set_contains", Some("a, b,c"), "c,a", None));
        assert!(!holds("set_contains", Some("a,b"), "a,z", None));
        assert!(holds("set_contains_any", Some("a,b"), "z,b", None));
    }

    #[test]
    fn regexp_matches_anywhere_unless_anchored() {
        assert!(holds("regexp", Some("us-east-1a"), "east", None));
        assert!(!holds("regexp", Some("us-east-1a"), "^east", None));
        let r = Regex::new("^us-(east|west)").unwrap();
        assert!(holds("regexp", Some("us-west-2"), "ignored", Some(&r)));
        assert_eq!(
            check_operand("regexp", "a(b").unwrap_err(),
            "regexp \"a(b\" does not compile: unclosed group"
        );
    }

    #[test]
    fn versions_are_lenient_and_semver_is_strict() {
        assert!(holds(
            "version",
            Some("5.15.0-91-generic"),
            ">= 5.10, < 6",
            None
        ));
        assert!(holds("version", Some("v1.2"), "= 1.2.0", None));
        assert!(!holds("version", Some("1.2.0-beta"), ">= 1.2.0", None));
        assert!(holds("version", Some("1.9.3"), "~> 1.2", None));
        assert!(!holds("version", Some("2.0.0"), "~> 1.2", None));
        assert!(holds("version", Some("1.2.9"), "~> 1.2.3", None));
        assert!(!holds("version", Some("1.3.0"), "~> 1.2.3", None));
        assert!(holds("version", Some("1.2.3"), "!= 1.2.4", None));
        assert!(holds("semver", Some("1.2.3-rc.1"), "< 1.2.3", None));
        assert!(
            !holds("semver", Some("1.2"), ">= 1.0.0", None),
            "not strict semver"
        );
        assert!(!holds("version", Some("linux"), ">= 1", None));
        assert_eq!(
            check_operand("version", ">= one").unwrap_err(),
            "version constraint \">= one\": \"one\" is not a version"
        );
        assert!(check_operand("semver", ">= 1.2").is_err());
        assert!(check_operand("semver", ">= 1.2.0, < 2.0.0").is_ok());
    }

    #[test]
    fn distinct_property_limits_are_positive_numbers() {
        assert!(check_operand("distinct_property", "").is_ok());
        assert!(check_operand("distinct_property", "2").is_ok());
        assert!(check_operand("distinct_property", "0").is_err());
        assert!(check_operand("distinct_property", "two").is_err());
    }
}
