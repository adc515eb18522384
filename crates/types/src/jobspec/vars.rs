//! HCL2 as Nomad evaluates job files: `variable` blocks (type, default, description,
//! validation), `locals`, values from `-var name=value`, `-var-file` and `NOMAD_VAR_name`
//! (defaults < var-file < environment < -var), `${var.x}` and `${local.y}` in strings and
//! expressions, and the functions of [`super::funcs`]. Evaluation is `hcl-rs`'s; this module
//! gathers the values and the context, and keeps runtime interpolation (`${NOMAD_ALLOC_ID}`,
//! `${attr.kernel.name}`, `${meta.rack}`) as written for the client and the scheduler.

use std::collections::{BTreeMap, BTreeSet};

use hcl::eval::{Context, Evaluate};
use hcl::Value;
use hcl_edit::expr::Expression;
use hcl_edit::repr::Span;
use hcl_edit::structure;

use super::SpecError;
use crate::hcl::Reader;

/// Values for a job file's variables from outside it, and how `file()` reads.
#[derive(Clone, Default)]
pub struct Inputs {
    /// `-var name=value`, in the order given (a later one wins).
    pub vars: Vec<(String, String)>,
    /// `-var-file` files: (name, contents), in order.
    pub var_files: Vec<(String, String)>,
    /// `NOMAD_VAR_<name>` environment variables, as (name, value).
    pub env: Vec<(String, String)>,
    /// How `file()` reads (relative to the job file); none refuses it.
    pub read_file: Option<super::funcs::FileReader>,
}

/// A variable's declared type.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Any,
    Str,
    Num,
    Bool,
    List(Box<Ty>),
    Map(Box<Ty>),
}

impl Ty {
    fn of(e: &Expression) -> Ty {
        match e {
            Expression::Variable(v) => match v.as_str() {
                "string" => Ty::Str,
                "number" => Ty::Num,
                "bool" => Ty::Bool,
                _ => Ty::Any,
            },
            Expression::FuncCall(f) => {
                let inner = f.args.iter().next().map_or(Ty::Any, Ty::of);
                match f.name.name.as_str() {
                    "list" | "set" => Ty::List(Box::new(inner)),
                    "map" => Ty::Map(Box::new(inner)),
                    _ => Ty::Any,
                }
            }
            _ => Ty::Any,
        }
    }

    fn name(&self) -> String {
        match self {
            Ty::Any => "any".into(),
            Ty::Str => "string".into(),
            Ty::Num => "number".into(),
            Ty::Bool => "bool".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(t) => format!("map({})", t.name()),
        }
    }

    /// `v` as this type (HCL's conversions: numbers and bools to strings, and back from text).
    fn convert(&self, v: Value) -> Result<Value, String> {
        let wrong = |v: &Value| format!("expected {}, found {v}", self.name());
        match (self, v) {
            (Ty::Any, v) => Ok(v),
            (Ty::Str, Value::String(s)) => Ok(Value::String(s)),
            (Ty::Str, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (Ty::Str, Value::Bool(b)) => Ok(Value::String(b.to_string())),
            (Ty::Num, Value::Number(n)) => Ok(Value::Number(n)),
            (Ty::Num, Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(i) => Ok(Value::from(i)),
                Err(_) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(hcl::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| wrong(&Value::String(s))),
            },
            (Ty::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (Ty::Bool, Value::String(s)) if s == "true" || s == "false" => Ok((s == "true").into()),
            (Ty::List(t), Value::Array(items)) => items
                .into_iter()
                .map(|i| t.convert(i))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (Ty::Map(t), Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| t.convert(v).map(|v| (k, v)))
                .collect::<Result<hcl::Map<_, _>, _>>()
                .map(Value::Object),
            (_, v) => Err(wrong(&v)),
        }
    }

    /// A value given as text (`-var`, `NOMAD_VAR_`): a string as it is, anything else read as
    /// an HCL expression (`[1, 2]`, `{a = "b"}`, `42`).
    fn read_text(&self, text: &str, ctx: &Context) -> Result<Value, String> {
        if *self == Ty::Str {
            return Ok(Value::String(text.to_string()));
        }
        let v = expression(text, ctx).or_else(|e| match self {
            Ty::Any => Ok(Value::String(text.to_string())),
            _ => Err(e),
        })?;
        self.convert(v)
    }
}

/// Evaluates `text` as one HCL expression.
fn expression(text: &str, ctx: &Context) -> Result<Value, String> {
    let body: hcl::Body = hcl::parse(&format!("v = {text}\n")).map_err(|e| e.to_string())?;
    let e = body
        .attributes()
        .next()
        .ok_or("not an expression")?
        .expr()
        .clone();
    e.evaluate(ctx).map_err(|e| e.to_string())
}

/// The context a job file's expressions are evaluated in: its variables, locals and the
/// functions.
pub(crate) struct Eval {
    ctx: Context<'static>,
    read_file: Option<super::funcs::FileReader>,
    /// The declared variables and the locals, to name one that is neither.
    variables: BTreeSet<String>,
    locals: BTreeSet<String>,
}

struct Declared {
    ty: Ty,
    default: Option<Value>,
    line: usize,
    column: usize,
    validations: Vec<(Expression, String, std::ops::Range<usize>)>,
}

fn span_of(e: &impl Span) -> Option<std::ops::Range<usize>> {
    e.span()
}

impl Eval {
    /// The context of a job file: `body` is the whole file; its `variable` and `locals` blocks
    /// are read here (the job decoder skips them).
    pub(crate) fn build(
        r: &Reader,
        body: &structure::Body,
        inputs: &Inputs,
    ) -> Result<Eval, SpecError> {
        super::funcs::with_reader(inputs.read_file.clone(), || Eval::build_in(r, body, inputs))
    }

    fn build_in(r: &Reader, body: &structure::Body, inputs: &Inputs) -> Result<Eval, SpecError> {
        within_budget(r.src).map_err(|why| r.err(0, why))?;
        let mut ctx = Context::new();
        super::funcs::declare(&mut ctx);
        let at = |span: Option<std::ops::Range<usize>>, message: String| r.err_at(span, message);
        // Declarations.
        let mut declared: BTreeMap<String, Declared> = BTreeMap::new();
        for b in body.blocks().filter(|b| b.ident.as_str() == "variable") {
            let [label] = b.labels.as_slice() else {
                return Err(at(
                    b.span(),
                    "variable block needs exactly one name: `variable \"<name>\" { ... }`".into(),
                ));
            };
            let name = label.as_str().to_string();
            if declared.contains_key(&name) {
                return Err(at(b.span(), format!("variable {name:?} is declared twice")));
            }
            let mut d = Declared {
                ty: Ty::Any,
                default: None,
                line: r.line(b.span()),
                column: r.column(b.span()),
                validations: Vec::new(),
            };
            for s in b.body.iter() {
                match s {
                    structure::Structure::Attribute(a) => match a.key.as_str() {
                        "type" => d.ty = Ty::of(&a.value),
                        "default" => {
                            let v = evaluate(&ctx, &a.value).and_then(checked).map_err(|e| {
                                at(
                                    span_of(&a.value),
                                    format!("variable {name:?}: default: {e}"),
                                )
                            })?;
                            d.default = Some(v);
                        }
                        "description" | "sensitive" | "nullable" => {}
                        other => {
                            return Err(at(
                                a.span(),
                                format!("variable {name:?}: unknown field {other:?}"),
                            ))
                        }
                    },
                    structure::Structure::Block(v) if v.ident.as_str() == "validation" => {
                        let mut condition = None;
                        let mut message = String::new();
                        for a in v.body.attributes() {
                            match a.key.as_str() {
                                "condition" => condition = Some(a.value.clone()),
                                "error_message" => {
                                    message = evaluate(&ctx, &a.value)
                                        .ok()
                                        .and_then(|m| m.as_str().map(String::from))
                                        .unwrap_or_default()
                                }
                                other => {
                                    return Err(at(
                                        a.span(),
                                        format!(
                                        "variable {name:?}: validation: unknown field {other:?}"
                                    ),
                                    ))
                                }
                            }
                        }
                        let condition = condition.ok_or_else(|| {
                            at(
                                v.span(),
                                format!("variable {name:?}: validation needs a condition"),
                            )
                        })?;
                        let span = span_of(&condition).unwrap_or_default();
                        d.validations.push((condition, message, span));
                    }
                    structure::Structure::Block(other) => {
                        return Err(at(
                            other.span(),
                            format!(
                                "variable {name:?}: unknown block {:?}",
                                other.ident.as_str()
                            ),
                        ))
                    }
                }
            }
            if let Some(v) = d.default.take() {
                d.default = Some(
                    d.ty.convert(v)
                        .map_err(|e| at(b.span(), format!("variable {name:?}: default: {e}")))?,
                );
            }
            declared.insert(name, d);
        }
        // Values: defaults < var files < environment < -var.
        let mut values: BTreeMap<String, Value> = declared
            .iter()
            .filter_map(|(k, d)| Some((k.clone(), d.default.clone()?)))
            .collect();
        for (file, text) in &inputs.var_files {
            let parsed: hcl::Body = hcl::parse(text).map_err(|e| SpecError {
                file: file.clone(),
                line: 0,
                column: 0,
                message: format!("syntax error: {e}"),
            })?;
            for a in parsed.attributes() {
                let name = a.key();
                let d = declared.get(name).ok_or_else(|| SpecError {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    message: format!("variable {name:?} is not declared in the job file"),
                })?;
                let v = a
                    .expr()
                    .evaluate(&ctx)
                    .map_err(|e| e.to_string())
                    .and_then(|v| d.ty.convert(v))
                    .map_err(|e| SpecError {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        message: format!("variable {name:?}: {e}"),
                    })?;
                values.insert(name.to_string(), v);
            }
        }
        for (name, text) in &inputs.env {
            if let Some(d) = declared.get(name) {
                let v = d.ty.read_text(text, &ctx).map_err(|e| {
                    r.err(
                        d.line,
                        format!("variable {name:?} from NOMAD_VAR_{name}: {e}"),
                    )
                })?;
                values.insert(name.clone(), v);
            }
        }
        for (name, text) in &inputs.vars {
            let d = declared.get(name).ok_or_else(|| {
                r.err(
                    0,
                    format!("-var {name}: variable {name:?} is not declared in the job file"),
                )
            })?;
            let v =
                d.ty.read_text(text, &ctx)
                    .map_err(|e| r.err(d.line, format!("variable {name:?} from -var: {e}")))?;
            values.insert(name.clone(), v);
        }
        for (name, d) in &declared {
            if !values.contains_key(name) {
                return Err(SpecError {
                    file: r.file.to_string(),
                    line: d.line,
                    column: d.column,
                    message: format!(
                        "variable {name:?} has no value: give it a default, -var {name}=..., a -var-file or NOMAD_VAR_{name}"
                    ),
                });
            }
        }
        ctx.declare_var("var", Value::Object(values.clone().into_iter().collect()));
        for (name, d) in &declared {
            for (condition, message, span) in &d.validations {
                let ok = evaluate(&ctx, condition).map_err(|e| {
                    at(
                        Some(span.clone()),
                        format!("variable {name:?}: validation: {e}"),
                    )
                })?;
                if ok != Value::Bool(true) {
                    let why = if message.is_empty() {
                        format!("variable {name:?} is not valid")
                    } else {
                        format!("variable {name:?}: {message}")
                    };
                    return Err(at(Some(span.clone()), why));
                }
            }
        }
        // Locals, each once the locals it refers to are known.
        let mut pending: Vec<(String, Expression)> = body
            .blocks()
            .filter(|b| b.ident.as_str() == "locals")
            .flat_map(|b| b.body.attributes())
            .map(|a| (a.key.as_str().to_string(), a.value.clone()))
            .collect();
        let mut locals: hcl::Map<String, Value> = hcl::Map::new();
        while !pending.is_empty() {
            let names: BTreeSet<String> = pending.iter().map(|(n, _)| n.clone()).collect();
            let ready = pending.iter().position(|(_, e)| {
                let text = r.text(span_of(e));
                referenced_locals(text).iter().all(|n| !names.contains(n))
            });
            let Some(i) = ready else {
                let (first, e) = &pending[0];
                let cycle: Vec<&str> = names.iter().map(String::as_str).collect();
                return Err(at(
                    span_of(e),
                    format!(
                        "locals refer to each other in a cycle ({}), starting with {first:?}",
                        cycle.join(", ")
                    ),
                ));
            };
            let (name, e) = pending.remove(i);
            ctx.declare_var("local", Value::Object(locals.clone()));
            let echoing = with_echoes(&ctx, r.text(span_of(&e)));
            let v = evaluate(&echoing, &e)
                .and_then(checked)
                .map_err(|why| at(span_of(&e), format!("local {name:?}: {why}")))?;
            locals.insert(name, v);
        }
        let local_names = locals.keys().cloned().collect();
        ctx.declare_var("local", Value::Object(locals));
        Ok(Eval {
            ctx,
            read_file: inputs.read_file.clone(),
            variables: declared.into_keys().collect(),
            locals: local_names,
        })
    }

    /// A `var.x` or `local.y` that `text` names and the file does not declare.
    fn undeclared(&self, text: &str) -> Result<(), String> {
        if let Some(v) = referenced(text, "var.")
            .into_iter()
            .find(|v| !self.variables.contains(v))
        {
            return Err(format!(
                "variable {v:?} is not declared: add a `variable {v:?} {{ ... }}` block"
            ));
        }
        if let Some(l) = referenced(text, "local.")
            .into_iter()
            .find(|l| !self.locals.contains(l))
        {
            return Err(format!("local {l:?} is not defined in a `locals` block"));
        }
        Ok(())
    }

    /// An expression's value (any expression but a literal or a kept template); `text` is its
    /// source.
    pub(crate) fn value(&self, e: &Expression, text: &str) -> Result<Value, String> {
        self.undeclared(text)?;
        let ctx = with_echoes(&self.ctx, text);
        super::funcs::with_reader(self.read_file.clone(), || evaluate(&ctx, e)).and_then(checked)
    }

    /// A string template: each `${...}` that uses variables, locals or functions is replaced
    /// by its value; the others (`${NOMAD_ALLOC_ID}`, `${attr.kernel.name}`) stay as written,
    /// for the client and the scheduler.
    pub(crate) fn template(&self, raw: &str) -> Result<String, String> {
        super::funcs::with_reader(self.read_file.clone(), || {
            let mut out = String::new();
            for part in interpolations(raw) {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Interp(inner) if uses_hcl2(inner) => {
                        self.undeclared(inner)?;
                        let v = expression(inner, &self.ctx).and_then(checked)?;
                        match v {
                            Value::String(s) => out.push_str(&s),
                            Value::Number(n) => out.push_str(&n.to_string()),
                            Value::Bool(b) => out.push_str(&b.to_string()),
                            other => return Err(format!("${{{inner}}} is {other}, not a string")),
                        }
                    }
                    Part::Interp(inner) => {
                        out.push_str("${");
                        out.push_str(inner);
                        out.push('}');
                    }
                }
            }
            Ok(out)
        })
    }
}

/// Most references to variables and locals, and most calls and parentheses, a job file may
/// have: with values bounded by [`super::funcs::MAX_VALUE`], what evaluating it can build and
/// take is bounded too (the servers parse job files one at a time).
const MAX_REFERENCES: usize = 1000;
const MAX_CALLS: usize = 10_000;

/// Refuses a file whose evaluation could take without bound: too many references or calls,
/// or `for` expressions (not supported yet; nested, they multiply).
fn within_budget(src: &str) -> Result<(), String> {
    let refs = src.matches("var.").count() + src.matches("local.").count();
    if refs > MAX_REFERENCES {
        return Err(format!(
            "the job file refers to variables and locals {refs} times, more than the {MAX_REFERENCES} allowed"
        ));
    }
    let calls = src.matches('(').count();
    if calls > MAX_CALLS {
        return Err(format!(
            "the job file has {calls} function calls and parentheses, more than the {MAX_CALLS} allowed"
        ));
    }
    static FOR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let for_expr = FOR.get_or_init(|| {
        regex::Regex::new(r"[\[{]\s*for\s+[A-Za-z_][\w-]*\s*(,\s*[A-Za-z_][\w-]*\s*)?\s+in\s")
            .expect("a valid pattern")
    });
    if for_expr.is_match(src) {
        return Err("for expressions are not supported in job files yet".into());
    }
    Ok(())
}

/// A value, unless it is larger than [`super::funcs::MAX_VALUE`].
fn checked(v: Value) -> Result<Value, String> {
    if super::funcs::size(&v) > super::funcs::MAX_VALUE {
        return Err(format!(
            "the value is larger than {} KiB",
            super::funcs::MAX_VALUE / 1024
        ));
    }
    Ok(v)
}

/// `ctx` with each runtime reference of `text` (`${NOMAD_ALLOC_ID}`, `${attr.kernel.name}`)
/// declared as its own text, so that evaluating the expression keeps it as written.
fn with_echoes(ctx: &Context<'static>, text: &str) -> Context<'static> {
    let mut roots: BTreeMap<String, Value> = BTreeMap::new();
    for part in interpolations(text) {
        let Part::Interp(inner) = part else { continue };
        let inner = inner.trim();
        let path: Vec<&str> = inner.split('.').collect();
        let is_ident = |s: &&str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if uses_hcl2(inner) || !path.iter().all(is_ident) || matches!(path[0], "var" | "local") {
            continue;
        }
        let mut leaf = Value::String(format!("${{{inner}}}"));
        for seg in path[1..].iter().rev() {
            leaf = Value::Object([(seg.to_string(), leaf)].into_iter().collect());
        }
        let slot = roots.entry(path[0].to_string()).or_insert(Value::Null);
        merge_into(slot, leaf);
    }
    let mut out = ctx.clone();
    for (root, v) in roots {
        out.declare_var(root, v);
    }
    out
}

fn merge_into(slot: &mut Value, v: Value) {
    match (slot, v) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                merge_into(a.entry(k).or_insert(Value::Null), bv);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn evaluate(ctx: &Context, e: &Expression) -> Result<Value, String> {
    let e: hcl::Expression = e.clone().into();
    e.evaluate(ctx).map_err(|e| e.to_string())
}

/// The `local.NAME`s an expression's text refers to.
fn referenced_locals(text: &str) -> BTreeSet<String> {
    referenced(text, "local.")
}

/// The names after `root` (`var.`, `local.`) in an expression's text.
fn referenced(text: &str, root: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(root) {
        let before = rest[..i].chars().last();
        let after = &rest[i + root.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !name.is_empty()
        {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// Whether an interpolation's expression needs evaluating here: it names `var.`, `local.`
/// or calls a function.
pub(crate) fn uses_hcl2(inner: &str) -> bool {
    let t = inner.trim();
    let word_before = |i: usize| {
        t[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    let names_root = |root: &str| t.match_indices(root).any(|(i, _)| !word_before(i));
    names_root("var.") || names_root("local.") || {
        // `name(`: a function call.
        let mut prev_ident = false;
        let mut found = false;
        for c in t.chars() {
            if c == '(' && prev_ident {
                found = true;
                break;
            }
            prev_ident = c.is_ascii_alphanumeric() || c == '_';
        }
        found
    }
}

enum Part<'a> {
    Text(&'a str),
    Interp(&'a str),
}

/// A template's text split into literal text and `${...}` interpolations (`$${` is literal).
fn interpolations(raw: &str) -> Vec<Part<'_>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            let (mut depth, mut j, mut in_str) = (1, i + 2, false);
            while j < bytes.len() && depth > 0 {
                match bytes[j] {
                    b'\\' if in_str => j += 1,
                    b'"' => in_str = !in_str,
                    b'{' if !in_str => depth += 1,
                    b'}' if !in_str => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if depth > 0 {
                break;
            }
            if start < i {
                out.push(Part::Text(&raw[start..i]));
            }
            out.push(Part::Interp(&raw[i + 2..j - 1]));
            i = j;
            start = j;
            continue;
        }
        i += 1;
    }
    if start < raw.len() {
        out.push(Part::Text(&raw[start..]));
    }
    out
}

/// An evaluated value as the job decoder reads values.
pub(crate) fn to_val(v: Value) -> crate::hcl::Val {
    use crate::hcl::Val;
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Val::Str(s),
        Value::Array(a) => Val::List(a.into_iter().map(to_val).collect()),
        Value::Object(m) => Val::Map(m.into_iter().map(|(k, v)| (k, to_val(v))).collect()),
    }
}

#[cfg(test)]
mod tests;
