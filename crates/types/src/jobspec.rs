//! Job files (HCL in Nomad's job-spec dialect, or JSON) into a validated [`Job`].
//!
//! Three steps, each usable alone:
//! 1. [`parse_hcl`] / [`parse_json`] read the text into a `Job`, applying Nomad's defaults
//!    ([`canonicalize`]) and remembering the line of every block and attribute;
//! 2. [`validate`] checks the rules that span fields (a pure function of the `Job`);
//! 3. a [`SpecError`] reports the first problem as `file:line: sentence`.
//!
//! The reading is in [`decode`] (HCL), the defaults in [`canonical`], the rules in
//! [`validate`]; this file holds the entry points and the error types.

use std::collections::HashMap;
use std::fmt;

mod canonical;
mod decode;
mod docker;
mod funcs;
mod validate;
pub(crate) mod vars;

pub use canonical::{
    canonicalize, default_migrate, default_reschedule, default_restart, default_update,
};
pub use docker::string_list;
pub use funcs::FileReader;
pub use validate::{place_in_region, validate, KILL_SIGNALS};
pub use vars::Inputs;

use canonical::{DEFAULT_LOG_FILES, DEFAULT_LOG_FILE_MB, SEC};
use decode::decode_file;

use crate::hcl::{Blk, Body, Lines, Reader, Scope, Val};

use crate::duration;
use crate::status::*;
use crate::v1::{
    value, Check, Constraint, Disconnect, Job, LogConfig, MigrateStrategy, NetworkResource, Port,
    ReschedulePolicy, Resources, RestartPolicy, Service, Task, TaskGroup, UpdateStrategy, Value,
    ValueList, ValueMap,
};

/// A job file that cannot become a job: one sentence naming the file, the line and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 when the problem has no single line (e.g. a JSON file).
    pub line: usize,
    /// 1-based, where an expression is to blame; 0 when the line says enough.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = crate::limits::tidy(&self.message);
        if self.line > 0 && self.column > 0 {
            write!(f, "{}:{}:{}: {message}", self.file, self.line, self.column)
        } else if self.line > 0 {
            write!(f, "{}:{}: {message}", self.file, self.line)
        } else {
            write!(f, "{}: {message}", self.file)
        }
    }
}

/// A broken rule found by [`validate`]: `path` locates the field (`group[app].update.canary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `path: message`, as the APIs answer it ([`crate::limits::tidy`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = crate::limits::tidy(&format!("{}: {}", self.path, self.message));
        f.write_str(&text)
    }
}

/// Reads an HCL job file. `file` is only used in error messages.
pub fn parse_hcl(file: &str, src: &str) -> Result<Job, SpecError> {
    parse_hcl_with(file, src, &Inputs::default())
}

/// Reads an HCL job file with values for its variables ([`Inputs`]).
pub fn parse_hcl_with(file: &str, src: &str, inputs: &Inputs) -> Result<Job, SpecError> {
    let mut reader = Reader::new(file, src);
    let body = reader.parse_job(inputs)?;
    let mut lines = Lines::default();
    let mut job = decode_file(&reader, &body, &mut lines)?;
    canonicalize(&mut job);
    if let Err(p) = validate(&job) {
        return Err(SpecError {
            file: file.into(),
            line: lines.find(&p.path),
            column: 0,
            message: p.message,
        });
    }
    Ok(job)
}

/// Reads a JSON job file: the `yurt.v1.Job` message as `-json` output prints it, either bare or
/// wrapped as `{"job": {...}}`. Missing blocks get the same defaults as in HCL.
pub fn parse_json(file: &str, src: &str) -> Result<Job, SpecError> {
    let err = |line, message| SpecError {
        file: file.to_string(),
        line,
        column: 0,
        message,
    };
    let mut v: serde_json::Value =
        serde_json::from_str(src).map_err(|e| err(e.line(), format!("invalid JSON: {e}")))?;
    for key in ["job", "Job"] {
        if let Some(inner) = v.get_mut(key) {
            v = inner.take();
            break;
        }
    }
    if !v.is_object() {
        return Err(err(
            0,
            "not a job object: the file must hold one JSON object".into(),
        ));
    }
    let mut job: Job = serde_path_to_error::deserialize(&v).map_err(|e| {
        let at = e.path().to_string();
        let why = e.into_inner();
        match at.as_str() {
            "." | "" => err(0, format!("not a job object: {why}")),
            _ => err(0, format!("{at}: {why}")),
        }
    })?;
    // Fields the job has no place for would be dropped without a word: refuse them.
    let decoded = serde_json::to_value(&job).unwrap_or_default();
    if let Some(unknown) =
        crate::nomad_json::dropped_fields_named(&v, &decoded, str::to_string).first()
    {
        return Err(err(0, format!("{unknown}: unknown field")));
    }
    for g in &mut job.task_groups {
        if g.count == 0 {
            g.count = 1;
        }
    }
    canonicalize(&mut job);
    validate(&job).map_err(|p| err(0, p.to_string()))?;
    Ok(job)
}

/// Reads a job file, choosing JSON for a `.json` name and HCL otherwise.
pub fn parse_file(file: &str, src: &str) -> Result<Job, SpecError> {
    parse_file_with(file, src, &Inputs::default())
}

/// [`parse_file`] with values for an HCL file's variables.
pub fn parse_file_with(file: &str, src: &str, inputs: &Inputs) -> Result<Job, SpecError> {
    if file.ends_with(".json") {
        parse_json(file, src)
    } else {
        parse_hcl_with(file, src, inputs)
    }
}

#[cfg(test)]
mod tests;
