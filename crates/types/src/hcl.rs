//! A small reader over hcl-edit's syntax tree for Yurt's HCL files (job specs, agent configs):
//! values with the line they were written on, and [`Scope`], typed getters over one block's
//! body that record where each field was and refuse fields nobody asked for.

use std::collections::HashMap;
use std::ops::Range;

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::repr::Span;
use hcl_edit::structure;

use crate::duration;
use crate::jobspec::SpecError;

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    Map(Vec<(String, Val)>),
}

impl Val {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a bool",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::List(_) => "a list",
            Val::Map(_) => "an object",
        }
    }
}

pub(crate) struct Attr {
    pub(crate) key: String,
    pub(crate) line: usize,
    pub(crate) val: Val,
}

pub(crate) struct Blk {
    pub(crate) ident: String,
    pub(crate) labels: Vec<String>,
    pub(crate) line: usize,
    pub(crate) body: Body,
}

#[derive(Default)]
pub(crate) struct Body {
    pub(crate) attrs: Vec<Attr>,
    pub(crate) blocks: Vec<Blk>,
}

impl Body {
    /// The body as Nomad's JSON writes a block (`size = 300` → `"Size": 300`; nested blocks
    /// as objects, several of one name as a list).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        self.json_with(true)
    }

    /// `to_json`, naming keys as Nomad's JSON does (`max` → `Max`) when `nomad_names`; a free-form
    /// block's (a scaling `policy`, `meta`, `options`) keep the user's names.
    fn json_with(&self, nomad_names: bool) -> serde_json::Value {
        let name = |k: &str| {
            if nomad_names {
                crate::nomad_json::pascal(k)
            } else {
                k.to_string()
            }
        };
        let mut out = serde_json::Map::new();
        for a in &self.attrs {
            out.insert(name(&a.key), a.val.to_json());
        }
        for b in &self.blocks {
            let key = name(&b.ident);
            let free_form = matches!(b.ident.as_str(), "policy" | "meta" | "options");
            let v = b.body.json_with(nomad_names && !free_form);
            match out.get_mut(&key) {
                Some(serde_json::Value::Array(list)) => list.push(v),
                Some(first) => *first = serde_json::Value::Array(vec![first.take(), v]),
                None => {
                    out.insert(key, v);
                }
            }
        }
        serde_json::Value::Object(out)
    }
}

impl Val {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Val::Null => J::Null,
            Val::Bool(b) => J::Bool(*b),
            Val::Int(i) => J::from(*i),
            Val::Float(f) => J::from(*f),
            Val::Str(s) => J::String(s.clone()),
            Val::List(l) => J::Array(l.iter().map(Val::to_json).collect()),
            Val::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) file: &'a str,
    pub(crate) src: &'a str,
    /// A job file's variables, locals and functions; without it (agent configs, ACL
    /// policies) only literal values are read.
    eval: Option<crate::jobspec::vars::Eval>,
    /// Where each line after the first starts (the offset after each `\n`), so that finding
    /// a line is a binary search, not a count from the start (parsing stays linear).
    line_starts: Vec<usize>,
}

/// An integer written outside a string on `line` with more digits than 64 bits hold, if
/// there is one: the parser calls it a syntax error without saying why.
fn huge_number(line: &str) -> Option<&str> {
    let mut quotes = 0;
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                if quotes % 2 == 0 && i - from > 19 {
                    return Some(&line[from..i]);
                }
                start = None;
            }
            _ => {}
        }
        if c == '"' {
            quotes += 1;
        }
    }
    None
}

impl<'a> Reader<'a> {
    pub(crate) fn new(file: &'a str, src: &'a str) -> Reader<'a> {
        let line_starts = src
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        Reader {
            file,
            src,
            eval: None,
            line_starts,
        }
    }

    /// Parses the whole source into a body.
    pub(crate) fn parse(&self) -> Result<Body, SpecError> {
        let body = hcl_edit::parser::parse_body(self.src).map_err(|e| self.syntax_error(&e))?;
        self.body(&body)
    }

    fn syntax_error(&self, e: &hcl_edit::parser::Error) -> SpecError {
        let line = e.location().line();
        // A number too large for 64 bits is a syntax error to the parser: say so.
        let text = self.src.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let message = match huge_number(text) {
            Some(n) => format!("syntax error: the number {n} is too large"),
            None => format!("syntax error: {}", e.message()),
        };
        self.err(line, message)
    }

    /// Parses a job file: its `variable` and `locals` blocks give the context its other
    /// expressions are evaluated in ([`crate::jobspec::vars`]); they are not part of the body.
    pub(crate) fn parse_job(&mut self, inputs: &crate::jobspec::Inputs) -> Result<Body, SpecError> {
        let parsed = hcl_edit::parser::parse_body(self.src).map_err(|e| self.syntax_error(&e))?;
        self.eval = Some(crate::jobspec::vars::Eval::build(self, &parsed, inputs)?);
        let mut body = Body::default();
        for s in parsed.iter() {
            let hcl2 = matches!(s, structure::Structure::Block(b)
                if matches!(b.ident.as_str(), "variable" | "locals"));
            if !hcl2 {
                self.structure(s, &mut body)?;
            }
        }
        Ok(body)
    }

    /// The column of a span's start (1-based; 0 without a span).
    pub(crate) fn column(&self, span: Option<Range<usize>>) -> usize {
        span.map_or(0, |r| {
            let line = self.line_starts.partition_point(|s| *s <= r.start);
            let start = if line == 0 {
                0
            } else {
                self.line_starts[line - 1]
            };
            self.src[start..r.start.min(self.src.len())].chars().count() + 1
        })
    }

    /// The source text of a span.
    pub(crate) fn text(&self, span: Option<Range<usize>>) -> &str {
        span.and_then(|r| self.src.get(r)).unwrap_or("")
    }

    /// An error at a span: its line and column.
    pub(crate) fn err_at(&self, span: Option<Range<usize>>, message: String) -> SpecError {
        SpecError {
            file: self.file.to_string(),
            line: self.line(span.clone()),
            column: self.column(span),
            message,
        }
    }

    pub(crate) fn line(&self, span: Option<Range<usize>>) -> usize {
        span.map_or(0, |r| {
            self.line_starts.partition_point(|s| *s <= r.start) + 1
        })
    }

    pub(crate) fn err(&self, line: usize, message: String) -> SpecError {
        SpecError {
            file: self.file.to_string(),
            line,
            column: 0,
            message,
        }
    }

    pub(crate) fn body(&self, body: &structure::Body) -> Result<Body, SpecError> {
        let mut out = Body::default();
        for s in body.iter() {
            self.structure(s, &mut out)?;
        }
        Ok(out)
    }

    fn structure(&self, s: &structure::Structure, out: &mut Body) -> Result<(), SpecError> {
        match s {
            structure::Structure::Attribute(a) => {
                let line = self.line(a.span());
                out.attrs.push(Attr {
                    key: a.key.as_str().to_string(),
                    line,
                    val: self.expr(&a.value, line)?,
                });
            }
            structure::Structure::Block(b) => out.blocks.push(Blk {
                ident: b.ident.as_str().to_string(),
                labels: b.labels.iter().map(|l| l.as_str().to_string()).collect(),
                line: self.line(b.span()),
                body: self.body(&b.body)?,
            }),
        }
        Ok(())
    }

    pub(crate) fn expr(&self, e: &Expression, line: usize) -> Result<Val, SpecError> {
        Ok(match e {
            Expression::Null(_) => Val::Null,
            Expression::Bool(b) => Val::Bool(*b.value()),
            Expression::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Expression::String(s) => Val::Str(s.value().to_string()),
            // "${NOMAD_ALLOC_ID}"-style interpolation is kept as written and resolved by the
            // client when the task starts.
            Expression::StringTemplate(_) => {
                let raw = e.span().map(|r| &self.src[r]).unwrap_or("");
                let text = unquote(raw);
                match &self.eval {
                    // `${var.x}`, `${local.y}` and function calls are evaluated; the rest is
                    // kept for the client.
                    Some(eval) => Val::Str(
                        eval.template(&text)
                            .map_err(|why| self.err_at(e.span(), why))?,
                    ),
                    None => Val::Str(text),
                }
            }
            Expression::Array(a) => Val::List(
                a.iter()
                    .map(|x| self.expr(x, line))
                    .collect::<Result<_, _>>()?,
            ),
            Expression::Object(o) => {
                let mut fields = Vec::new();
                for (k, v) in o.iter() {
                    let key = match k {
                        ObjectKey::Ident(i) => i.as_str().to_string(),
                        ObjectKey::Expression(Expression::String(s)) => s.value().to_string(),
                        ObjectKey::Expression(_) => {
                            return Err(
                                self.err(line, "object keys must be names or strings".into())
                            )
                        }
                    };
                    fields.push((key, self.expr(v.expr(), line)?));
                }
                Val::Map(fields)
            }
            Expression::Parenthesis(p) => self.expr(p.inner(), line)?,
            other if self.eval.is_some() => {
                let eval = self.eval.as_ref().expect("checked");
                let text = self.text(other.span());
                crate::jobspec::vars::to_val(
                    eval.value(other, text)
                        .map_err(|why| self.err_at(other.span(), why))?,
                )
            }
            _ => {
                return Err(self.err(
                    line,
                    "only literal values are supported here (no variables, functions or operators)"
                        .into(),
                ))
            }
        })
    }
}

pub(crate) fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    inner
        .replace("\\\"", "\"")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\\\", "\\")
}

/// Where each field was written: structural path → line, for error messages.
#[derive(Default)]
pub(crate) struct Lines(HashMap<String, usize>);

impl Lines {
    pub(crate) fn set(&mut self, path: String, line: usize) {
        self.0.insert(path, line);
    }

    /// The line of `path`, or of its nearest recorded parent.
    pub(crate) fn find(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.0.get("job").copied().unwrap_or(0),
            }
        }
    }
}

/// One block's body being decoded: typed getters that record lines, and a check that every
/// attribute and block was understood.
pub(crate) struct Scope<'a> {
    pub(crate) r: &'a Reader<'a>,
    pub(crate) body: &'a Body,
    /// What the block is, for messages: `group "app"`.
    pub(crate) what: String,
    /// Structural path of the block: `group[app]`.
    pub(crate) path: String,
    /// The attributes asked for, and the blocks: a name may be one and not the other.
    pub(crate) used: Vec<&'a str>,
    used_blocks: Vec<&'a str>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(r: &'a Reader<'a>, body: &'a Body, what: String, path: String) -> Self {
        Scope {
            r,
            body,
            what,
            path,
            used: Vec::new(),
            used_blocks: Vec::new(),
        }
    }

    pub(crate) fn attr(&mut self, key: &'a str, lines: &mut Lines) -> Option<&'a Attr> {
        self.used.push(key);
        let a = self.body.attrs.iter().find(|a| a.key == key)?;
        lines.set(format!("{}.{key}", self.path), a.line);
        Some(a)
    }

    pub(crate) fn type_err(&self, a: &Attr, want: &str) -> SpecError {
        self.r.err(
            a.line,
            format!(
                "{}: {} must be {want}, found {}",
                self.what,
                a.key,
                a.val.kind()
            ),
        )
    }

    pub(crate) fn string(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<String>, SpecError> {
        match self.attr(key, lines) {
            None => Ok(None),
            Some(Attr {
                val: Val::Str(s), ..
            }) => Ok(Some(s.clone())),
            Some(a) => Err(self.type_err(a, "a string")),
        }
    }

    pub(crate) fn int(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<i64>, SpecError> {
        match self.attr(key, lines) {
            None => Ok(None),
            Some(Attr {
                val: Val::Int(i), ..
            }) => Ok(Some(*i)),
            Some(a) => Err(self.type_err(a, "a whole number")),
        }
    }

    pub(crate) fn uint(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<u32>, SpecError> {
        match self.int(key, lines)? {
            None => Ok(None),
            Some(i) => u32::try_from(i).map(Some).map_err(|_| {
                let line = lines.find(&format!("{}.{key}", self.path));
                let why = if i < 0 {
                    "must not be negative"
                } else {
                    "is too large"
                };
                self.r
                    .err(line, format!("{}: {key} ({i}) {why}", self.what))
            }),
        }
    }

    pub(crate) fn boolean(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<bool>, SpecError> {
        match self.attr(key, lines) {
            None => Ok(None),
            Some(Attr {
                val: Val::Bool(b), ..
            }) => Ok(Some(*b)),
            Some(a) => Err(self.type_err(a, "true or false")),
        }
    }

    pub(crate) fn duration_ms(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<u64>, SpecError> {
        match self.attr(key, lines) {
            None => Ok(None),
            Some(
                a @ Attr {
                    val: Val::Str(s), ..
                },
            ) => duration::parse(s)
                .map(|d| Some(d.as_millis() as u64))
                .map_err(|e| self.r.err(a.line, format!("{}: {key}: {e}", self.what))),
            Some(a) => Err(self.type_err(a, "a duration string such as \"30s\"")),
        }
    }

    pub(crate) fn strings(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<Option<Vec<String>>, SpecError> {
        match self.attr(key, lines) {
            None => Ok(None),
            Some(
                a @ Attr {
                    val: Val::List(l), ..
                },
            ) => l
                .iter()
                .map(|v| match v {
                    Val::Str(s) => Ok(s.clone()),
                    _ => Err(self.type_err(a, "a list of strings")),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(a) => Err(self.type_err(a, "a list of strings")),
        }
    }

    /// A string map written either as a block (`env { A = "1" }`) or an attribute (`env = {...}`).
    pub(crate) fn string_map(
        &mut self,
        key: &'a str,
        lines: &mut Lines,
    ) -> Result<std::collections::BTreeMap<String, String>, SpecError> {
        let mut out = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: &Val, line: usize, what: &str| -> Result<(), SpecError> {
            let s = match v {
                Val::Str(s) => s.clone(),
                Val::Int(i) => i.to_string(),
                Val::Float(f) => f.to_string(),
                Val::Bool(b) => b.to_string(),
                other => {
                    return Err(self.r.err(
                        line,
                        format!("{what}: {key}.{k} must be a string, found {}", other.kind()),
                    ))
                }
            };
            out.insert(k.to_string(), s);
            Ok(())
        };
        let what = self.what.clone();
        for b in self.body.blocks.iter().filter(|b| b.ident == key) {
            for a in &b.body.attrs {
                put(&a.key, &a.val, a.line, &what)?;
            }
        }
        self.used.push(key);
        self.used_blocks.push(key);
        if let Some(a) = self.body.attrs.iter().find(|a| a.key == key) {
            match &a.val {
                Val::Map(fields) => {
                    for (k, v) in fields {
                        put(k, v, a.line, &what)?;
                    }
                }
                other => {
                    return Err(self.r.err(
                        a.line,
                        format!("{what}: {key} must be an object, found {}", other.kind()),
                    ))
                }
            }
        }
        let _ = lines;
        Ok(out)
    }

    pub(crate) fn blocks(&mut self, ident: &'a str) -> impl Iterator<Item = &'a Blk> {
        self.used_blocks.push(ident);
        self.body.blocks.iter().filter(move |b| b.ident == ident)
    }

    /// At most one block of a kind.
    pub(crate) fn block(&mut self, ident: &'a str) -> Result<Option<&'a Blk>, SpecError> {
        let mut it = self.blocks(ident);
        let first = it.next();
        if let Some(second) = it.next() {
            return Err(self.r.err(
                second.line,
                format!("{}: only one {ident} block is allowed", self.what),
            ));
        }
        Ok(first)
    }

    pub(crate) fn label(&self, b: &Blk, what: &str) -> Result<String, SpecError> {
        match b.labels.as_slice() {
            [one] if !one.is_empty() => Ok(one.clone()),
            _ => Err(self.r.err(
                b.line,
                format!("{what} block needs exactly one name: `{what} \"<name>\" {{ ... }}`"),
            )),
        }
    }

    /// Takes Nomad's fields that Yurt accepts without implementing them (`names`: the
    /// field's name in job files and in Nomad's JSON), as Nomad's JSON writes them: a block's
    /// attributes under their JSON-style names, labelled blocks by label, repeated blocks as a
    /// list.
    pub(crate) fn unimplemented(
        &mut self,
        names: &[(&'a str, &str)],
        lines: &mut Lines,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let mut out = std::collections::BTreeMap::new();
        for (hcl, json) in names {
            if let Some(a) = self.attr(hcl, lines) {
                out.insert(json.to_string(), a.val.to_json());
                continue;
            }
            let found: Vec<&Blk> = self.blocks(hcl).collect();
            let labelled = found.iter().any(|b| !b.labels.is_empty());
            let value = match found.as_slice() {
                [] => continue,
                [one] if !labelled => one.body.to_json(),
                many if labelled => serde_json::Value::Object(
                    many.iter()
                        .map(|b| (b.labels.join("."), b.body.to_json()))
                        .collect(),
                ),
                many => serde_json::Value::Array(many.iter().map(|b| b.body.to_json()).collect()),
            };
            out.insert(json.to_string(), value);
        }
        out
    }

    /// Fails on the first attribute or block that no getter asked for.
    pub(crate) fn finish(self) -> Result<(), SpecError> {
        for a in &self.body.attrs {
            if self.used_blocks.contains(&a.key.as_str()) && !self.used.contains(&a.key.as_str()) {
                return Err(self.r.err(
                    a.line,
                    format!(
                        "{}: {} must be a block (write `{} {{ ... }}`), found {}",
                        self.what,
                        a.key,
                        a.key,
                        a.val.kind()
                    ),
                ));
            }
            if !self.used.contains(&a.key.as_str()) {
                return Err(self
                    .r
                    .err(a.line, format!("{}: unknown field {:?}", self.what, a.key)));
            }
        }
        for b in &self.body.blocks {
            if !self.used_blocks.contains(&b.ident.as_str()) {
                return Err(self.r.err(
                    b.line,
                    format!("{}: unknown block {:?}", self.what, b.ident),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::huge_number;

    #[test]
    fn only_an_unquoted_number_past_64_bits_is_called_too_large() {
        assert_eq!(
            huge_number("    count = 18446744073709551616"),
            Some("18446744073709551616")
        );
        assert_eq!(huge_number("count = 9223372036854775807"), None);
        // Inside a string it is text, and the syntax error is about something else.
        assert_eq!(huge_number("k = \"123456789012345678901\" = }"), None);
        assert_eq!(
            huge_number("k = \"a\" x = 123456789012345678901"),
            Some("123456789012345678901")
        );
    }
}
