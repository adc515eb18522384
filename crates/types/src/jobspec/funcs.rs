//! The functions job files may call (those Nomad job files commonly use: strings,
//! collections, encoding, numbers and type conversion, `file`), as `hcl-rs` evaluation
//! functions. `file` reads through the caller's [`FileReader`] ([`with_reader`]): this crate
//! does no I/O.

use std::cell::RefCell;
use std::sync::Arc;

use base64::Engine;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

/// How `file(name)` gets a file's contents (the CLI reads relative to the job file; the
/// servers give none, so a job sent to them cannot read their files).
pub type FileReader = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

thread_local! {
    /// What `file()` reads with while a job file is evaluated (hcl-rs functions are plain
    /// function pointers: they cannot carry it).
    static READER: RefCell<Option<FileReader>> = const { RefCell::new(None) };
}

/// Runs `f` with `file()` reading through `reader` (none: `file()` is refused).
pub(crate) fn with_reader<T>(reader: Option<FileReader>, f: impl FnOnce() -> T) -> T {
    let before = READER.with(|b| b.replace(reader));
    let out = f();
    READER.with(|b| *b.borrow_mut() = before);
    out
}

type R = Result<Value, String>;

/// The largest value a function may return or an expression may evaluate to (its strings'
/// bytes plus 8 per element), so that a job file cannot make the server build a huge value.
pub(crate) const MAX_VALUE: usize = 256 * 1024;

/// A value's size as [`MAX_VALUE`] counts it.
pub(crate) fn size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(a) => 8 + a.iter().map(size).sum::<usize>(),
        Value::Object(m) => 8 + m.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>(),
        _ => 8,
    }
}

/// `v`, unless it is larger than [`MAX_VALUE`].
fn bounded(name: &str, v: Value) -> R {
    if size(&v) > MAX_VALUE {
        return Err(format!(
            "{name}: the result is larger than {} KiB",
            MAX_VALUE / 1024
        ));
    }
    Ok(v)
}

fn s(args: &FuncArgs, i: usize) -> String {
    args[i].as_str().unwrap_or_default().to_string()
}

fn n(args: &FuncArgs, i: usize) -> f64 {
    args[i].as_f64().unwrap_or(0.0)
}

fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::Number(Number::from(v as i64))
    } else {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

fn list(args: &FuncArgs, i: usize) -> Vec<Value> {
    args[i].as_array().cloned().unwrap_or_default()
}

/// A value as text where a string is wanted (`tostring`, `join`, `format`'s `%s`).
fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!("cannot use {other} as a string")),
    }
}

fn upper(a: FuncArgs) -> R {
    Ok(s(&a, 0).to_uppercase().into())
}
fn lower(a: FuncArgs) -> R {
    Ok(s(&a, 0).to_lowercase().into())
}
fn title_unbounded(a: FuncArgs) -> R {
    let t = s(&a, 0)
        .split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(t.into())
}
fn title(a: FuncArgs) -> R {
    bounded("title", title_unbounded(a)?)
}
fn trimspace(a: FuncArgs) -> R {
    Ok(s(&a, 0).trim().into())
}
fn trim(a: FuncArgs) -> R {
    let cut: Vec<char> = s(&a, 1).chars().collect();
    Ok(s(&a, 0).trim_matches(cut.as_slice()).into())
}
fn trimprefix(a: FuncArgs) -> R {
    let (t, p) = (s(&a, 0), s(&a, 1));
    Ok(t.strip_prefix(&p).unwrap_or(&t).into())
}
fn trimsuffix(a: FuncArgs) -> R {
    let (t, p) = (s(&a, 0), s(&a, 1));
    Ok(t.strip_suffix(&p).unwrap_or(&t).into())
}
fn replace_unbounded(a: FuncArgs) -> R {
    Ok(s(&a, 0).replace(&s(&a, 1), &s(&a, 2)).into())
}
fn replace(a: FuncArgs) -> R {
    bounded("replace", replace_unbounded(a)?)
}
fn substr_unbounded(a: FuncArgs) -> R {
    let chars: Vec<char> = s(&a, 0).chars().collect();
    let (off, len) = (n(&a, 1) as i64, n(&a, 2) as i64);
    let start = if off < 0 {
        chars.len() as i64 + off
    } else {
        off
    }
    .clamp(0, chars.len() as i64);
    let end = if len < 0 {
        chars.len() as i64
    } else {
        start + len
    }
    .min(chars.len() as i64);
    Ok(chars[start as usize..end.max(start) as usize]
        .iter()
        .collect::<String>()
        .into())
}
fn substr(a: FuncArgs) -> R {
    bounded("substr", substr_unbounded(a)?)
}
fn startswith(a: FuncArgs) -> R {
    Ok(s(&a, 0).starts_with(&s(&a, 1)).into())
}
fn endswith(a: FuncArgs) -> R {
    Ok(s(&a, 0).ends_with(&s(&a, 1)).into())
}
fn split(a: FuncArgs) -> R {
    let (sep, t) = (s(&a, 0), s(&a, 1));
    Ok(Value::Array(
        t.split(sep.as_str()).map(Value::from).collect(),
    ))
}
fn join_unbounded(a: FuncArgs) -> R {
    let sep = s(&a, 0);
    let mut parts = Vec::new();
    for v in a.variadic_args() {
        for item in v.as_array().into_iter().flatten() {
            parts.push(text(item)?);
        }
    }
    Ok(parts.join(&sep).into())
}
fn join(a: FuncArgs) -> R {
    bounded("join", join_unbounded(a)?)
}
/// `format` with `%s`, `%d`, `%v`, `%q` and `%%`.
fn format_unbounded(a: FuncArgs) -> R {
    let spec = s(&a, 0);
    let mut args = a.variadic_args();
    let mut out = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'd' | 'v' | 'q')) => {
                let v = args.next().ok_or("format: not enough arguments")?;
                let t = text(v)?;
                if verb == 'q' {
                    out.push_str(&format!("{t:?}"));
                } else {
                    out.push_str(&t);
                }
            }
            other => {
                return Err(format!(
                    "format: unsupported verb %{}",
                    other.unwrap_or(' ')
                ))
            }
        }
    }
    Ok(out.into())
}
fn format(a: FuncArgs) -> R {
    bounded("format", format_unbounded(a)?)
}
fn concat_unbounded(a: FuncArgs) -> R {
    Ok(Value::Array(
        a.variadic_args()
            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
            .collect(),
    ))
}
fn concat(a: FuncArgs) -> R {
    bounded("concat", concat_unbounded(a)?)
}
fn length(a: FuncArgs) -> R {
    let len = match &a[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(l) => l.len(),
        Value::Object(m) => m.len(),
        other => return Err(format!("length: {other} has no length")),
    };
    Ok(num(len as f64))
}
fn contains(a: FuncArgs) -> R {
    Ok(list(&a, 0).contains(&a[1]).into())
}
fn keys(a: FuncArgs) -> R {
    let mut k: Vec<String> = a[0]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::from).collect()))
}
fn values(a: FuncArgs) -> R {
    let mut m: Vec<(String, Value)> = a[0]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    m.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(Value::Array(m.into_iter().map(|(_, v)| v).collect()))
}
fn merge_unbounded(a: FuncArgs) -> R {
    let mut out = Map::new();
    for v in a.variadic_args() {
        for (k, x) in v.as_object().into_iter().flatten() {
            out.insert(k.clone(), x.clone());
        }
    }
    Ok(Value::Object(out))
}
fn merge(a: FuncArgs) -> R {
    bounded("merge", merge_unbounded(a)?)
}
fn lookup(a: FuncArgs) -> R {
    let key = s(&a, 1);
    match a[0].as_object().and_then(|m| m.get(&key)) {
        Some(v) => Ok(v.clone()),
        None if a.len() > 2 => Ok(a[2].clone()),
        None => Err(format!("lookup: no key {key:?} and no default")),
    }
}
fn element(a: FuncArgs) -> R {
    let l = list(&a, 0);
    if l.is_empty() {
        return Err("element: the list is empty".into());
    }
    Ok(l[(n(&a, 1) as usize) % l.len()].clone())
}
fn coalesce(a: FuncArgs) -> R {
    a.variadic_args()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "coalesce: every argument is null or empty".into())
}
fn distinct(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in list(&a, 0) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
fn flatten_unbounded(a: FuncArgs) -> R {
    fn walk(v: &[Value], out: &mut Vec<Value>) {
        for x in v {
            match x {
                Value::Array(inner) => walk(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    walk(&list(&a, 0), &mut out);
    Ok(Value::Array(out))
}
fn flatten(a: FuncArgs) -> R {
    bounded("flatten", flatten_unbounded(a)?)
}
fn reverse(a: FuncArgs) -> R {
    let mut l = list(&a, 0);
    l.reverse();
    Ok(Value::Array(l))
}
fn sort(a: FuncArgs) -> R {
    let mut l: Vec<String> = list(&a, 0).iter().map(text).collect::<Result<_, _>>()?;
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::from).collect()))
}
fn range(a: FuncArgs) -> R {
    let nums: Vec<f64> = (0..a.len()).map(|i| n(&a, i)).collect();
    let (start, end, step) = match nums.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s, e] => (*s, *e, if e >= s { 1.0 } else { -1.0 }),
        [s, e, st] => (*s, *e, *st),
        _ => return Err("range: one to three numbers".into()),
    };
    if step == 0.0 {
        return Err("range: the step must not be zero".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(num(x));
        x += step;
        if out.len() > 1024 {
            return Err("range: more than 1024 numbers".into());
        }
    }
    Ok(Value::Array(out))
}
fn min(a: FuncArgs) -> R {
    let v: Vec<f64> = a.variadic_args().filter_map(Value::as_f64).collect();
    v.iter()
        .copied()
        .reduce(f64::min)
        .map(num)
        .ok_or_else(|| "min: no numbers".into())
}
fn max(a: FuncArgs) -> R {
    let v: Vec<f64> = a.variadic_args().filter_map(Value::as_f64).collect();
    v.iter()
        .copied()
        .reduce(f64::max)
        .map(num)
        .ok_or_else(|| "max: no numbers".into())
}
fn abs(a: FuncArgs) -> R {
    Ok(num(n(&a, 0).abs()))
}
fn ceil(a: FuncArgs) -> R {
    Ok(num(n(&a, 0).ceil()))
}
fn floor(a: FuncArgs) -> R {
    Ok(num(n(&a, 0).floor()))
}
fn tostring(a: FuncArgs) -> R {
    text(&a[0]).map(Value::from)
}
fn tonumber(a: FuncArgs) -> R {
    match &a[0] {
        Value::Number(_) => Ok(a[0].clone()),
        Value::String(t) => t
            .trim()
            .parse::<f64>()
            .map(num)
            .map_err(|_| format!("tonumber: {t:?} is not a number")),
        other => Err(format!("tonumber: {other} is not a number")),
    }
}
fn tobool(a: FuncArgs) -> R {
    match &a[0] {
        Value::Bool(_) => Ok(a[0].clone()),
        Value::String(t) if t == "true" || t == "false" => Ok((t == "true").into()),
        other => Err(format!("tobool: {other} is not true or false")),
    }
}
fn tolist(a: FuncArgs) -> R {
    Ok(Value::Array(list(&a, 0)))
}
fn tomap(a: FuncArgs) -> R {
    a[0].as_object()
        .map(|m| Value::Object(m.clone()))
        .ok_or_else(|| format!("tomap: {} is not a map", a[0]))
}
fn jsonencode(a: FuncArgs) -> R {
    serde_json::to_string(&a[0])
        .map(Value::from)
        .map_err(|e| e.to_string())
}
fn jsondecode_unbounded(a: FuncArgs) -> R {
    serde_json::from_str::<Value>(&s(&a, 0)).map_err(|e| format!("jsondecode: {e}"))
}
fn jsondecode(a: FuncArgs) -> R {
    bounded("jsondecode", jsondecode_unbounded(a)?)
}
fn base64encode(a: FuncArgs) -> R {
    Ok(base64::engine::general_purpose::STANDARD
        .encode(s(&a, 0))
        .into())
}
fn base64decode_unbounded(a: FuncArgs) -> R {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s(&a, 0))
        .map_err(|e| format!("base64decode: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "base64decode: the result is not UTF-8".into())
}
fn base64decode(a: FuncArgs) -> R {
    bounded("base64decode", base64decode_unbounded(a)?)
}
/// The contents of a file, relative to the job file's directory.
fn file_unbounded(a: FuncArgs) -> R {
    let name = s(&a, 0);
    let reader = READER
        .with(|b| b.borrow().clone())
        .ok_or("file: the job was not read from a file, so there is no directory to read from")?;
    reader(&name)
        .map(Value::from)
        .map_err(|e| format!("file: {e}"))
}
fn file(a: FuncArgs) -> R {
    bounded("file", file_unbounded(a)?)
}

/// Declares every function in `ctx`.
pub(crate) fn declare(ctx: &mut Context<'_>) {
    use ParamType::{Any, Array, Number as N, Object, String as S};
    let fixed = |params: Vec<ParamType>, f: hcl::eval::Func| FuncDef::new(f, params);
    let many = |params: Vec<ParamType>, rest: ParamType, f: hcl::eval::Func| {
        FuncDef::builder()
            .params(params)
            .variadic_param(rest)
            .build(f)
    };
    let arr = || Array(Box::new(Any));
    let obj = || Object(Box::new(Any));
    let defs: Vec<(&str, FuncDef)> = vec![
        ("upper", fixed(vec![S], upper)),
        ("lower", fixed(vec![S], lower)),
        ("title", fixed(vec![S], title)),
        ("trimspace", fixed(vec![S], trimspace)),
        ("trim", fixed(vec![S, S], trim)),
        ("trimprefix", fixed(vec![S, S], trimprefix)),
        ("trimsuffix", fixed(vec![S, S], trimsuffix)),
        ("replace", fixed(vec![S, S, S], replace)),
        ("substr", fixed(vec![S, N, N], substr)),
        ("startswith", fixed(vec![S, S], startswith)),
        ("endswith", fixed(vec![S, S], endswith)),
        ("split", fixed(vec![S, S], split)),
        ("join", many(vec![S], arr(), join)),
        ("format", many(vec![S], Any, format)),
        ("concat", many(vec![], arr(), concat)),
        ("length", fixed(vec![Any], length)),
        ("contains", fixed(vec![arr(), Any], contains)),
        ("keys", fixed(vec![obj()], keys)),
        ("values", fixed(vec![obj()], values)),
        ("merge", many(vec![], obj(), merge)),
        ("lookup", many(vec![obj(), S], Any, lookup)),
        ("element", fixed(vec![arr(), N], element)),
        ("coalesce", many(vec![], Any, coalesce)),
        ("distinct", fixed(vec![arr()], distinct)),
        ("flatten", fixed(vec![arr()], flatten)),
        ("reverse", fixed(vec![arr()], reverse)),
        ("sort", fixed(vec![arr()], sort)),
        ("range", many(vec![N], N, range)),
        ("min", many(vec![], N, min)),
        ("max", many(vec![], N, max)),
        ("abs", fixed(vec![N], abs)),
        ("ceil", fixed(vec![N], ceil)),
        ("floor", fixed(vec![N], floor)),
        ("tostring", fixed(vec![Any], tostring)),
        ("tonumber", fixed(vec![Any], tonumber)),
        ("tobool", fixed(vec![Any], tobool)),
        ("tolist", fixed(vec![arr()], tolist)),
        ("toset", fixed(vec![arr()], distinct)),
        ("tomap", fixed(vec![obj()], tomap)),
        ("jsonencode", fixed(vec![Any], jsonencode)),
        ("jsondecode", fixed(vec![S], jsondecode)),
        ("base64encode", fixed(vec![S], base64encode)),
        ("base64decode", fixed(vec![S], base64decode)),
        ("file", fixed(vec![S], file)),
    ];
    for (name, def) in defs {
        ctx.declare_func(name, def);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(expr: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare(&mut ctx);
        let body: hcl::Body = hcl::parse(&format!("v = {expr}")).map_err(|e| e.to_string())?;
        let e = body.attributes().next().unwrap().expr().clone();
        e.evaluate(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn the_functions_job_files_use() {
        let cases = [
            ("upper(\"api\")", "\"API\""),
            ("title(\"geo api\")", "\"Geo Api\""),
            ("trimprefix(\"v1.2\", \"v\")", "\"1.2\""),
            ("replace(\"a-b-c\", \"-\", \".\")", "\"a.b.c\""),
            ("substr(\"hello\", 1, 3)", "\"ell\""),
            ("format(\"%s-%d\", \"web\", 3)", "\"web-3\""),
            ("join(\",\", [\"a\", \"b\"], [\"c\"])", "\"a,b,c\""),
            ("split(\",\", \"a,b\")", "[\"a\",\"b\"]"),
            ("concat([1], [2, 3])", "[1,2,3]"),
            ("length({a = 1, b = 2})", "2"),
            ("contains([\"x\"], \"x\")", "true"),
            ("keys({b = 1, a = 2})", "[\"a\",\"b\"]"),
            ("merge({a = 1}, {a = 2, b = 3})", "{\"a\":2,\"b\":3}"),
            ("lookup({a = 1}, \"b\", 7)", "7"),
            ("element([\"a\", \"b\"], 3)", "\"b\""),
            ("coalesce(\"\", \"x\")", "\"x\""),
            ("distinct([1, 1, 2])", "[1,2]"),
            ("flatten([[1], [2, [3]]])", "[1,2,3]"),
            ("range(3)", "[0,1,2]"),
            ("max(1, 5, 3)", "5"),
            ("ceil(1.2)", "2"),
            ("tonumber(\"42\")", "42"),
            ("tostring(42)", "\"42\""),
            ("tobool(\"true\")", "true"),
            ("jsonencode({a = [1]})", "\"{\\\"a\\\":[1]}\""),
            ("jsondecode(\"[1,2]\")", "[1,2]"),
            ("base64decode(base64encode(\"hi\"))", "\"hi\""),
        ];
        for (expr, want) in cases {
            let got = eval(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(serde_json::to_string(&got).unwrap(), want, "{expr}");
        }
        assert!(eval("tonumber(\"x\")")
            .unwrap_err()
            .contains("is not a number"));
        assert!(eval("file(\"x\")").unwrap_err().contains("no directory"));
        let reader: FileReader = Arc::new(|name| match name {
            "motd" => Ok("hello".into()),
            other => Err(format!("no file {other}")),
        });
        let got = with_reader(Some(reader.clone()), || eval("file(\"motd\")"));
        assert_eq!(got.unwrap(), Value::from("hello"));
        let missing = with_reader(Some(reader), || eval("file(\"x\")")).unwrap_err();
        assert!(missing.contains("file: no file x"), "{missing}");
    }
}
