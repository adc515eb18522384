//! Job files (HCL in Nomad's job-spec dialect, or JSON) into a validated [`Job`].
//!
//! Three steps, each usable alone:
//! 1. [`parse_hcl`] / [`parse_json`] read the text into a `Job`, applying Nomad's defaults
//!    ([`canonicalize`]) and remembering the line of every block and attribute;
//! 2. [`validate`] checks the rules that span fields (a pure function of the `Job`);
//! 3. a [`SpecError`] reports the first problem as `file:line: sentence`.

use std::collections::HashMap;
use std::fmt;

use crate::hcl::{Blk, Body, Lines, Reader, Scope, Val};

use crate::duration;
use crate::status::*;
use crate::v1::{
    value, Check, Constraint, Job, LogConfig, MigrateStrategy, NetworkResource, Port,
    ReschedulePolicy, Resources, RestartPolicy, Service, Task, TaskGroup, UpdateStrategy, Value,
    ValueList, ValueMap,
};

/// A job file that cannot become a job: one sentence naming the file, the line and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 when the problem has no single line (e.g. a JSON file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = crate::limits::tidy(&self.message);
        if self.line > 0 {
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

const DEFAULT_PRIORITY: i32 = 50;
const DEFAULT_CPU: u32 = 100;
const DEFAULT_MEMORY_MB: u32 = 300;
const DEFAULT_KILL_TIMEOUT_MS: u64 = 5_000;
/// Nomad's default `logs` block: 10 files of 10 MB per stream.
const DEFAULT_LOG_FILES: u32 = 10;
const DEFAULT_LOG_FILE_MB: u32 = 10;
const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// Nomad's default `update` block, given to every service and system group that has none.
pub fn default_update() -> UpdateStrategy {
    UpdateStrategy {
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time_ms: 10 * SEC,
        healthy_deadline_ms: 5 * MIN,
        progress_deadline_ms: 10 * MIN,
        auto_revert: false,
        auto_promote: false,
        canary: 0,
        stagger_ms: 30 * SEC,
    }
}

/// Nomad's default `migrate` block, given to service groups.
pub fn default_migrate() -> MigrateStrategy {
    MigrateStrategy {
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time_ms: 10 * SEC,
        healthy_deadline_ms: 5 * MIN,
    }
}

/// Nomad's default `restart` block for a job type.
pub fn default_restart(job_type: &str) -> RestartPolicy {
    let batch = job_type == JOB_TYPE_BATCH;
    RestartPolicy {
        attempts: if batch { 3 } else { 2 },
        interval_ms: if batch { 24 * HOUR } else { 30 * MIN },
        delay_ms: 15 * SEC,
        mode: "fail".into(),
    }
}

/// Nomad's default `reschedule` block for a job type (system jobs are never rescheduled).
pub fn default_reschedule(job_type: &str) -> Option<ReschedulePolicy> {
    match job_type {
        JOB_TYPE_SERVICE => Some(ReschedulePolicy {
            attempts: 0,
            interval_ms: 0,
            delay_ms: 30 * SEC,
            delay_function: "exponential".into(),
            max_delay_ms: HOUR,
            unlimited: true,
        }),
        JOB_TYPE_BATCH => Some(ReschedulePolicy {
            attempts: 1,
            interval_ms: 24 * HOUR,
            delay_ms: 5 * SEC,
            delay_function: "constant".into(),
            max_delay_ms: 0,
            unlimited: false,
        }),
        _ => None,
    }
}

/// Reads an HCL job file. `file` is only used in error messages.
pub fn parse_hcl(file: &str, src: &str) -> Result<Job, SpecError> {
    let reader = Reader::new(file, src);
    let body = reader.parse()?;
    let mut lines = Lines::default();
    let mut job = decode_file(&reader, &body, &mut lines)?;
    canonicalize(&mut job);
    if let Err(p) = validate(&job) {
        return Err(SpecError {
            file: file.into(),
            line: lines.find(&p.path),
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
    if file.ends_with(".json") {
        parse_json(file, src)
    } else {
        parse_hcl(file, src)
    }
}

/// Applies Nomad's defaults to everything left unset (zero or absent).
pub fn canonicalize(job: &mut Job) {
    if job.r#type.is_empty() {
        job.r#type = JOB_TYPE_SERVICE.into();
    }
    if job.name.is_empty() {
        job.name = job.id.clone();
    }
    if job.priority == 0 {
        job.priority = DEFAULT_PRIORITY;
    }
    if job.datacenters.is_empty() {
        job.datacenters = vec!["*".into()];
    }
    if job.namespace.is_empty() {
        job.namespace = "default".into();
    }
    if job.region.is_empty() {
        job.region = "global".into();
    }
    let ty = job.r#type.clone();
    let wants_update = ty == JOB_TYPE_SERVICE || ty == JOB_TYPE_SYSTEM;
    if wants_update && job.update.is_none() {
        job.update = Some(default_update());
    }
    for g in &mut job.task_groups {
        if wants_update && g.update.is_none() {
            g.update = job.update.clone();
        }
        if ty == JOB_TYPE_SERVICE && g.migrate.is_none() {
            g.migrate = Some(default_migrate());
        }
        // A partly written block keeps its fields; the rest (marked u32/u64::MAX by the HCL
        // reader, or empty) come from the type's defaults.
        let d = default_restart(&ty);
        let r = g.restart.get_or_insert_with(|| d.clone());
        fill(&mut r.attempts, d.attempts);
        fill(&mut r.interval_ms, d.interval_ms);
        fill(&mut r.delay_ms, d.delay_ms);
        if r.mode.is_empty() {
            r.mode = d.mode;
        }
        match (g.reschedule.as_mut(), default_reschedule(&ty)) {
            (None, d) => g.reschedule = d,
            (Some(r), Some(d)) => {
                fill(&mut r.attempts, d.attempts);
                fill(&mut r.interval_ms, d.interval_ms);
                fill(&mut r.delay_ms, d.delay_ms);
                fill(&mut r.max_delay_ms, d.max_delay_ms);
                if r.delay_function.is_empty() {
                    r.delay_function = d.delay_function;
                }
            }
            (Some(r), None) => {
                fill(&mut r.attempts, 0);
                fill(&mut r.interval_ms, 0);
                fill(&mut r.delay_ms, 0);
                fill(&mut r.max_delay_ms, 0);
            }
        }
        for t in &mut g.tasks {
            let r = t.resources.get_or_insert_with(Resources::default);
            if r.cpu == 0 {
                r.cpu = DEFAULT_CPU;
            }
            if r.memory_mb == 0 {
                r.memory_mb = DEFAULT_MEMORY_MB;
            }
            if t.kill_timeout_ms == 0 {
                t.kill_timeout_ms = DEFAULT_KILL_TIMEOUT_MS;
            }
            if t.kill_signal.is_empty() {
                t.kill_signal = "SIGTERM".into();
            }
            t.logs.get_or_insert(LogConfig {
                max_files: DEFAULT_LOG_FILES,
                max_file_size_mb: DEFAULT_LOG_FILE_MB,
            });
        }
    }
}

/// Replaces the "not written" marker (the type's MAX) with a default.
fn fill<T: PartialEq + Copy + Bounded>(v: &mut T, default: T) {
    if *v == T::MAX {
        *v = default;
    }
}

trait Bounded {
    const MAX: Self;
}
impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}
impl Bounded for u64 {
    const MAX: Self = u64::MAX;
}

/// Checks the rules of a canonical job. Returns the first broken rule.
pub fn validate(job: &Job) -> Result<(), Problem> {
    let fail = |path: &str, message: String| {
        Err(Problem {
            path: path.into(),
            message,
        })
    };
    if job.id.is_empty() {
        return fail("job", "job has no ID: write `job \"<id>\" { ... }`".into());
    }
    crate::limits::check_name("job ID", &job.id).or_else(|m| fail("job", m))?;
    crate::limits::check_job(job).or_else(|(path, message)| fail(&path, message))?;
    if ![JOB_TYPE_SERVICE, JOB_TYPE_BATCH, JOB_TYPE_SYSTEM].contains(&job.r#type.as_str()) {
        return fail(
            "job.type",
            format!("type {:?} is not one of service, batch, system", job.r#type),
        );
    }
    if !(1..=100).contains(&job.priority) {
        return fail(
            "job.priority",
            format!("priority ({}) must be between 1 and 100", job.priority),
        );
    }
    if job.task_groups.is_empty() {
        return fail(
            "job",
            "job has no group: add at least one `group` block".into(),
        );
    }
    for (i, c) in job.constraints.iter().enumerate() {
        validate_constraint(c, &format!("job.constraint[{i}]"))?;
    }
    check_sizes(job)?;
    let mut groups = HashMap::new();
    for g in &job.task_groups {
        let gp = format!("group[{}]", g.name);
        if groups.insert(g.name.as_str(), ()).is_some() {
            return fail(&gp, format!("group {:?} is defined twice", g.name));
        }
        validate_group(job, g, &gp)?;
    }
    Ok(())
}

/// How many groups, tasks and allocations one job may ask for ([`crate::limits`]).
fn check_sizes(job: &Job) -> Result<(), Problem> {
    use crate::limits::{MAX_COUNT, MAX_GROUPS, MAX_JOB_ALLOCS, MAX_TASKS};
    let fail = |path: String, message: String| Err(Problem { path, message });
    if job.task_groups.len() > MAX_GROUPS {
        return fail(
            "job".into(),
            format!(
                "the job has {} groups, more than the limit of {MAX_GROUPS}",
                job.task_groups.len()
            ),
        );
    }
    for g in &job.task_groups {
        let gp = format!("group[{}]", g.name);
        if g.count > MAX_COUNT {
            return fail(
                format!("{gp}.count"),
                format!("count ({}) must be at most {MAX_COUNT}", g.count),
            );
        }
        if g.tasks.len() > MAX_TASKS {
            return fail(
                gp,
                format!(
                    "group {:?} has {} tasks, more than the limit of {MAX_TASKS}",
                    g.name,
                    g.tasks.len()
                ),
            );
        }
    }
    let total: u64 = job.task_groups.iter().map(|g| u64::from(g.count)).sum();
    if total > MAX_JOB_ALLOCS {
        return fail(
            "job".into(),
            format!(
                "the job's groups ask for {total} allocations in all, more than the limit of {MAX_JOB_ALLOCS}"
            ),
        );
    }
    Ok(())
}

fn validate_group(job: &Job, g: &TaskGroup, gp: &str) -> Result<(), Problem> {
    let fail = |path: String, message: String| Err(Problem { path, message });
    if g.name.is_empty() {
        return fail(gp.into(), "group has no name".into());
    }
    crate::limits::check_name("group name", &g.name).or_else(|m| fail(gp.into(), m))?;
    if job.r#type == JOB_TYPE_SYSTEM && g.count > 1 {
        return fail(
            format!("{gp}.count"),
            format!(
                "count ({}) must be 0 or 1 in a system job: it runs once on every node",
                g.count
            ),
        );
    }
    if g.tasks.is_empty() {
        return fail(
            gp.into(),
            format!("group {:?} has no task: add a `task` block", g.name),
        );
    }
    for (i, c) in g.constraints.iter().enumerate() {
        validate_constraint(c, &format!("{gp}.constraint[{i}]"))?;
    }
    if let Some(u) = &g.update {
        if job.r#type == JOB_TYPE_BATCH {
            return fail(
                format!("{gp}.update"),
                "job type \"batch\" does not allow an update block".into(),
            );
        }
        validate_update(u, &format!("{gp}.update"))?;
    }
    if let Some(m) = &g.migrate {
        let p = format!("{gp}.migrate");
        check_health_check(&m.health_check, &p)?;
        if m.min_healthy_time_ms > m.healthy_deadline_ms {
            return fail(
                format!("{p}.min_healthy_time"),
                format!(
                    "migrate.min_healthy_time ({}) must not be greater than healthy_deadline ({})",
                    duration::format_ms(m.min_healthy_time_ms),
                    duration::format_ms(m.healthy_deadline_ms)
                ),
            );
        }
    }
    if let Some(r) = &g.restart {
        let p = format!("{gp}.restart");
        if r.mode != "fail" && r.mode != "delay" {
            return fail(
                format!("{p}.mode"),
                format!("restart.mode {:?} is not one of fail, delay", r.mode),
            );
        }
        if u64::from(r.attempts) * r.delay_ms > r.interval_ms {
            return fail(
                p,
                format!(
                    "restart: {} attempts with a delay of {} do not fit in the interval of {}",
                    r.attempts,
                    duration::format_ms(r.delay_ms),
                    duration::format_ms(r.interval_ms)
                ),
            );
        }
    }
    if let Some(r) = &g.reschedule {
        let p = format!("{gp}.reschedule");
        if job.r#type == JOB_TYPE_SYSTEM {
            return fail(
                p,
                "job type \"system\" does not allow a reschedule block".into(),
            );
        }
        if !["constant", "exponential", "fibonacci"].contains(&r.delay_function.as_str()) {
            return fail(
                format!("{p}.delay_function"),
                format!(
                    "reschedule.delay_function {:?} is not one of constant, exponential, fibonacci",
                    r.delay_function
                ),
            );
        }
        if !r.unlimited && r.attempts > 0 && r.interval_ms < 15 * SEC {
            return fail(
                format!("{p}.interval"),
                format!(
                    "reschedule.interval ({}) must be at least 15s",
                    duration::format_ms(r.interval_ms)
                ),
            );
        }
    }
    let mut labels = HashMap::new();
    for n in &g.networks {
        for port in n.reserved_ports.iter().chain(&n.dynamic_ports) {
            let pp = format!("{gp}.network.port[{}]", port.label);
            crate::limits::check_name("port label", &port.label)
                .or_else(|m| fail(pp.clone(), m))?;
            for (field, v) in [("static", port.value), ("to", port.to)] {
                if v > 65535 {
                    return fail(
                        format!("{pp}.{field}"),
                        format!(
                            "port {:?}: {field} ({v}) must be between 1 and 65535",
                            port.label
                        ),
                    );
                }
            }
            if labels.insert(port.label.clone(), ()).is_some() {
                return fail(
                    format!("{gp}.network.port[{}]", port.label),
                    format!("port {:?} is defined twice", port.label),
                );
            }
        }
    }
    for s in &g.services {
        validate_service(s, &format!("{gp}.service[{}]", s.name), &labels)?;
    }
    let mut tasks = HashMap::new();
    for t in &g.tasks {
        let tp = format!("{gp}.task[{}]", t.name);
        crate::limits::check_name("task name", &t.name).or_else(|m| fail(tp.clone(), m))?;
        if tasks.insert(t.name.as_str(), ()).is_some() {
            return fail(
                tp,
                format!("task {:?} is defined twice in group {:?}", t.name, g.name),
            );
        }
        validate_task(t, &tp, &labels)?;
    }
    Ok(())
}

fn check_health_check(hc: &str, path: &str) -> Result<(), Problem> {
    if ["checks", "task_states", "manual"].contains(&hc) {
        return Ok(());
    }
    Err(Problem {
        path: format!("{path}.health_check"),
        message: format!("health_check {hc:?} is not one of checks, task_states, manual"),
    })
}

fn validate_update(u: &UpdateStrategy, p: &str) -> Result<(), Problem> {
    let fail = |field: &str, message: String| {
        Err(Problem {
            path: format!("{p}.{field}"),
            message,
        })
    };
    check_health_check(&u.health_check, p)?;
    if u.healthy_deadline_ms == 0 {
        return fail(
            "healthy_deadline",
            "update.healthy_deadline must be greater than 0".into(),
        );
    }
    if u.min_healthy_time_ms >= u.healthy_deadline_ms {
        return fail(
            "min_healthy_time",
            format!(
                "update.min_healthy_time ({}) must be less than healthy_deadline ({})",
                duration::format_ms(u.min_healthy_time_ms),
                duration::format_ms(u.healthy_deadline_ms)
            ),
        );
    }
    if u.progress_deadline_ms != 0 && u.healthy_deadline_ms >= u.progress_deadline_ms {
        return fail(
            "healthy_deadline",
            format!(
                "update.healthy_deadline ({}) must be less than progress_deadline ({})",
                duration::format_ms(u.healthy_deadline_ms),
                duration::format_ms(u.progress_deadline_ms)
            ),
        );
    }
    if u.auto_promote && u.canary == 0 {
        return fail(
            "auto_promote",
            "update.auto_promote requires a canary count greater than zero".into(),
        );
    }
    Ok(())
}

/// Signals a task may ask to be stopped with.
pub const KILL_SIGNALS: &[&str] = &[
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL",
];

fn validate_constraint(c: &Constraint, p: &str) -> Result<(), Problem> {
    if !crate::constraint::OPERATORS.contains(&c.operator.as_str()) {
        return Err(Problem {
            path: format!("{p}.operator"),
            message: format!("constraint operator {:?} is not known", c.operator),
        });
    }
    let needs_attr = !matches!(c.operator.as_str(), "distinct_hosts");
    if needs_attr && c.attribute.is_empty() {
        return Err(Problem {
            path: p.into(),
            message: format!(
                "constraint with operator {:?} needs an attribute",
                c.operator
            ),
        });
    }
    crate::constraint::check_operand(&c.operator, &c.value).map_err(|message| Problem {
        path: format!("{p}.value"),
        message,
    })
}

fn validate_service(s: &Service, p: &str, ports: &HashMap<String, ()>) -> Result<(), Problem> {
    let fail = |message: String| {
        Err(Problem {
            path: p.into(),
            message,
        })
    };
    if s.name.is_empty() {
        return fail("service has no name".into());
    }
    crate::limits::check_name("service name", &s.name).or_else(fail)?;
    if !s.port.is_empty() && s.port.parse::<u16>().is_err() && !ports.contains_key(&s.port) {
        return fail(format!(
            "service {:?} uses port {:?}, which no network block defines",
            s.name, s.port
        ));
    }
    for c in &s.checks {
        if !["http", "tcp", "script"].contains(&c.r#type.as_str()) {
            return fail(format!(
                "check {:?}: type {:?} is not one of http, tcp, script",
                c.name, c.r#type
            ));
        }
        if c.interval_ms == 0 || c.timeout_ms == 0 {
            return fail(format!(
                "check {:?} needs an interval and a timeout greater than 0",
                c.name
            ));
        }
        if c.r#type == "http" && c.path.is_empty() {
            return fail(format!("http check {:?} needs a path", c.name));
        }
        if c.r#type == "script" && c.command.is_empty() {
            return fail(format!("script check {:?} needs a command", c.name));
        }
    }
    Ok(())
}

fn validate_task(t: &Task, tp: &str, ports: &HashMap<String, ()>) -> Result<(), Problem> {
    let fail = |path: String, message: String| Err(Problem { path, message });
    if t.driver.is_empty() {
        return fail(tp.into(), format!("task {:?} has no driver", t.name));
    }
    if let Some(l) = &t.logs {
        if l.max_files == 0 || l.max_file_size_mb == 0 {
            return fail(
                format!("{tp}.logs"),
                format!(
                    "logs: max_files ({}) and max_file_size ({}) must be at least 1",
                    l.max_files, l.max_file_size_mb
                ),
            );
        }
    }
    if t.driver != "raw_exec" && t.driver != "exec" {
        return fail(
            format!("{tp}.driver"),
            format!(
                "driver {:?} is not supported (use raw_exec or exec)",
                t.driver
            ),
        );
    }
    match t.config.get("command").and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::StringValue(s)) if !s.is_empty() => {}
        Some(_) => {
            return fail(
                format!("{tp}.config.command"),
                "config.command must be a string".into(),
            )
        }
        None => {
            return fail(
                format!("{tp}.config"),
                format!(
                    "task {:?}: config.command is required by the {} driver",
                    t.name, t.driver
                ),
            )
        }
    }
    if let Some(args) = t.config.get("args") {
        let ok = matches!(&args.kind, Some(value::Kind::ListValue(l))
            if l.values.iter().all(|v| matches!(v.kind, Some(value::Kind::StringValue(_)))));
        if !ok {
            return fail(
                format!("{tp}.config.args"),
                "config.args must be a list of strings".into(),
            );
        }
    }
    if !KILL_SIGNALS.contains(&t.kill_signal.as_str()) {
        return fail(
            format!("{tp}.kill_signal"),
            format!(
                "kill_signal {:?} is not one of {}",
                t.kill_signal,
                KILL_SIGNALS.join(", ")
            ),
        );
    }
    let r = t.resources.unwrap_or_default();
    if r.cpu < 1 {
        return fail(
            format!("{tp}.resources.cpu"),
            "resources.cpu must be at least 1".into(),
        );
    }
    if r.memory_mb < 10 {
        return fail(
            format!("{tp}.resources.memory"),
            format!(
                "resources.memory ({} MB) must be at least 10 MB",
                r.memory_mb
            ),
        );
    }
    for s in &t.services {
        validate_service(s, &format!("{tp}.service[{}]", s.name), ports)?;
    }
    Ok(())
}

fn decode_file(r: &Reader, body: &Body, lines: &mut Lines) -> Result<Job, SpecError> {
    let mut top = Scope::new(r, body, "file".into(), "file".into());
    let jobs: Vec<&Blk> = top.blocks("job").collect();
    let id_of = |b: &Blk| top.label(b, "job");
    let first_label = jobs.first().map(|b| id_of(b));
    top.finish()?;
    let b = match jobs.as_slice() {
        [one] => *one,
        [] => return Err(r.err(0, "no job block found: write `job \"<id>\" { ... }`".into())),
        [_, second, ..] => {
            return Err(r.err(second.line, "only one job block is allowed per file".into()))
        }
    };
    lines.set("job".into(), b.line);
    let id = first_label.expect("one job block")?;
    let mut s = Scope::new(r, &b.body, format!("job {id:?}"), "job".into());
    let mut job = Job {
        id: id.clone(),
        name: s.string("name", lines)?.unwrap_or_default(),
        r#type: s.string("type", lines)?.unwrap_or_default(),
        datacenters: s.strings("datacenters", lines)?.unwrap_or_default(),
        namespace: s.string("namespace", lines)?.unwrap_or_default(),
        region: s.string("region", lines)?.unwrap_or_default(),
        meta: s.string_map("meta", lines)?,
        ..Job::default()
    };
    if let Some(p) = s.int("priority", lines)? {
        job.priority = i32::try_from(p).unwrap_or(-1);
    }
    job.constraints = decode_constraints(&mut s, lines, "job")?;
    let job_update = s.block("update")?;
    if let Some(u) = job_update {
        lines.set("job.update".into(), u.line);
        let mut base = default_update();
        apply_update(r, u, &mut base, "job.update", lines)?;
        job.update = Some(base);
    }
    for g in s.blocks("group") {
        job.task_groups.push(decode_group(r, g, job_update, lines)?);
    }
    s.finish()?;
    Ok(job)
}

fn decode_constraints<'a>(
    s: &mut Scope<'a>,
    lines: &mut Lines,
    path: &str,
) -> Result<Vec<Constraint>, SpecError> {
    let r = s.r;
    let mut out = Vec::new();
    for (i, b) in s.blocks("constraint").enumerate() {
        let p = format!("{path}.constraint[{i}]");
        lines.set(p.clone(), b.line);
        let mut c = Scope::new(r, &b.body, "constraint".into(), p);
        let attribute = c.string("attribute", lines)?.unwrap_or_default();
        let mut operator = c.string("operator", lines)?.unwrap_or_else(|| "=".into());
        let value = c.string("value", lines)?.unwrap_or_default();
        let mut value = value;
        let mut attribute = attribute;
        if let Some(true) = c.boolean("distinct_hosts", lines)? {
            operator = "distinct_hosts".into();
        }
        if let Some(prop) = c.string("distinct_property", lines)? {
            operator = "distinct_property".into();
            attribute = prop;
        }
        // Nomad's shorthands: `regexp = "..."` for `operator = "regexp"  value = "..."`.
        for op in [
            "regexp",
            "version",
            "semver",
            "set_contains",
            "set_contains_all",
            "set_contains_any",
        ] {
            if let Some(v) = c.string(op, lines)? {
                operator = op.into();
                value = v;
            }
        }
        c.finish()?;
        out.push(Constraint {
            attribute,
            operator,
            value,
        });
    }
    Ok(out)
}

/// Applies the attributes written in an `update` block over `u` (so a group's block overrides
/// the job's field by field, as in Nomad).
fn apply_update(
    r: &Reader,
    b: &Blk,
    u: &mut UpdateStrategy,
    path: &str,
    lines: &mut Lines,
) -> Result<(), SpecError> {
    let mut s = Scope::new(r, &b.body, "update".into(), path.into());
    if let Some(v) = s.uint("max_parallel", lines)? {
        u.max_parallel = v;
    }
    if let Some(v) = s.string("health_check", lines)? {
        u.health_check = v;
    }
    if let Some(v) = s.duration_ms("min_healthy_time", lines)? {
        u.min_healthy_time_ms = v;
    }
    if let Some(v) = s.duration_ms("healthy_deadline", lines)? {
        u.healthy_deadline_ms = v;
    }
    if let Some(v) = s.duration_ms("progress_deadline", lines)? {
        u.progress_deadline_ms = v;
    }
    if let Some(v) = s.boolean("auto_revert", lines)? {
        u.auto_revert = v;
    }
    if let Some(v) = s.boolean("auto_promote", lines)? {
        u.auto_promote = v;
    }
    if let Some(v) = s.uint("canary", lines)? {
        u.canary = v;
    }
    if let Some(v) = s.duration_ms("stagger", lines)? {
        u.stagger_ms = v;
    }
    s.finish()
}

fn decode_group(
    r: &Reader,
    b: &Blk,
    job_update: Option<&Blk>,
    lines: &mut Lines,
) -> Result<TaskGroup, SpecError> {
    let name = Scope::new(r, &b.body, String::new(), String::new()).label(b, "group")?;
    let gp = format!("group[{name}]");
    lines.set(gp.clone(), b.line);
    let mut s = Scope::new(r, &b.body, format!("group {name:?}"), gp.clone());
    let mut g = TaskGroup {
        name: name.clone(),
        count: s.uint("count", lines)?.unwrap_or(1),
        meta: s.string_map("meta", lines)?,
        ..TaskGroup::default()
    };
    g.constraints = decode_constraints(&mut s, lines, &gp)?;
    let group_update = s.block("update")?;
    if job_update.is_some() || group_update.is_some() {
        let mut u = default_update();
        let up = format!("{gp}.update");
        for blk in job_update.iter().chain(group_update.iter()) {
            lines.set(up.clone(), blk.line);
            apply_update(r, blk, &mut u, &up, lines)?;
        }
        g.update = Some(u);
    }
    if let Some(m) = s.block("migrate")? {
        let p = format!("{gp}.migrate");
        lines.set(p.clone(), m.line);
        let mut ms = Scope::new(r, &m.body, "migrate".into(), p);
        let d = default_migrate();
        g.migrate = Some(MigrateStrategy {
            max_parallel: ms.uint("max_parallel", lines)?.unwrap_or(d.max_parallel),
            health_check: ms.string("health_check", lines)?.unwrap_or(d.health_check),
            min_healthy_time_ms: ms
                .duration_ms("min_healthy_time", lines)?
                .unwrap_or(d.min_healthy_time_ms),
            healthy_deadline_ms: ms
                .duration_ms("healthy_deadline", lines)?
                .unwrap_or(d.healthy_deadline_ms),
        });
        ms.finish()?;
    }
    // Restart and reschedule defaults depend on the job type, known only later: decode onto
    // markers and let `canonicalize` fill what is unset.
    if let Some(rb) = s.block("restart")? {
        let p = format!("{gp}.restart");
        lines.set(p.clone(), rb.line);
        let mut rs = Scope::new(r, &rb.body, "restart".into(), p);
        g.restart = Some(RestartPolicy {
            attempts: rs.uint("attempts", lines)?.unwrap_or(u32::MAX),
            interval_ms: rs.duration_ms("interval", lines)?.unwrap_or(u64::MAX),
            delay_ms: rs.duration_ms("delay", lines)?.unwrap_or(u64::MAX),
            mode: rs.string("mode", lines)?.unwrap_or_default(),
        });
        rs.finish()?;
    }
    if let Some(rb) = s.block("reschedule")? {
        let p = format!("{gp}.reschedule");
        lines.set(p.clone(), rb.line);
        let mut rs = Scope::new(r, &rb.body, "reschedule".into(), p);
        g.reschedule = Some(ReschedulePolicy {
            attempts: rs.uint("attempts", lines)?.unwrap_or(u32::MAX),
            interval_ms: rs.duration_ms("interval", lines)?.unwrap_or(u64::MAX),
            delay_ms: rs.duration_ms("delay", lines)?.unwrap_or(u64::MAX),
            delay_function: rs.string("delay_function", lines)?.unwrap_or_default(),
            max_delay_ms: rs.duration_ms("max_delay", lines)?.unwrap_or(u64::MAX),
            unlimited: rs.boolean("unlimited", lines)?.unwrap_or(false),
        });
        rs.finish()?;
    }
    for nb in s.blocks("network") {
        let p = format!("{gp}.network");
        lines.set(p.clone(), nb.line);
        let mut ns = Scope::new(r, &nb.body, "network".into(), p.clone());
        let mut n = NetworkResource {
            mode: ns.string("mode", lines)?.unwrap_or_else(|| "host".into()),
            ..NetworkResource::default()
        };
        for pb in ns.blocks("port") {
            let label = ns.label(pb, "port")?;
            let pp = format!("{p}.port[{label}]");
            lines.set(pp.clone(), pb.line);
            let mut ps = Scope::new(r, &pb.body, format!("port {label:?}"), pp);
            let value = ps.uint("static", lines)?.unwrap_or(0);
            let to = ps.uint("to", lines)?.unwrap_or(0);
            ps.finish()?;
            let port = Port { label, value, to };
            if value > 0 {
                n.reserved_ports.push(port);
            } else {
                n.dynamic_ports.push(port);
            }
        }
        ns.finish()?;
        g.networks.push(n);
    }
    g.services = decode_services(&mut s, lines, &gp)?;
    for tb in s.blocks("task") {
        g.tasks.push(decode_task(r, tb, &gp, lines)?);
    }
    s.finish()?;
    Ok(g)
}

fn decode_services<'a>(
    s: &mut Scope<'a>,
    lines: &mut Lines,
    path: &str,
) -> Result<Vec<Service>, SpecError> {
    let r = s.r;
    let mut out = Vec::new();
    for b in s.blocks("service") {
        let mut ss = Scope::new(r, &b.body, "service".into(), String::new());
        let name = ss.string("name", lines)?.unwrap_or_default();
        let p = format!("{path}.service[{name}]");
        lines.set(p.clone(), b.line);
        ss.path = p.clone();
        let mut svc = Service {
            name,
            port: ss.string("port", lines)?.unwrap_or_default(),
            tags: ss.strings("tags", lines)?.unwrap_or_default(),
            provider: ss
                .string("provider", lines)?
                .unwrap_or_else(|| "nomad".into()),
            ..Service::default()
        };
        for cb in ss.blocks("check") {
            let mut cs = Scope::new(r, &cb.body, "check".into(), p.clone());
            svc.checks.push(Check {
                name: cs.string("name", lines)?.unwrap_or_default(),
                r#type: cs.string("type", lines)?.unwrap_or_default(),
                path: cs.string("path", lines)?.unwrap_or_default(),
                port: cs.string("port", lines)?.unwrap_or_default(),
                interval_ms: cs.duration_ms("interval", lines)?.unwrap_or(0),
                timeout_ms: cs.duration_ms("timeout", lines)?.unwrap_or(0),
                command: cs.string("command", lines)?.unwrap_or_default(),
                args: cs.strings("args", lines)?.unwrap_or_default(),
            });
            cs.finish()?;
        }
        ss.finish()?;
        out.push(svc);
    }
    Ok(out)
}

fn decode_task(r: &Reader, b: &Blk, gp: &str, lines: &mut Lines) -> Result<Task, SpecError> {
    let name = Scope::new(r, &b.body, String::new(), String::new()).label(b, "task")?;
    let tp = format!("{gp}.task[{name}]");
    lines.set(tp.clone(), b.line);
    let mut s = Scope::new(r, &b.body, format!("task {name:?}"), tp.clone());
    let mut t = Task {
        name,
        driver: s.string("driver", lines)?.unwrap_or_default(),
        user: s.string("user", lines)?.unwrap_or_default(),
        env: s.string_map("env", lines)?,
        meta: s.string_map("meta", lines)?,
        kill_timeout_ms: s.duration_ms("kill_timeout", lines)?.unwrap_or(0),
        kill_signal: s.string("kill_signal", lines)?.unwrap_or_default(),
        ..Task::default()
    };
    if let Some(cb) = s.block("config")? {
        lines.set(format!("{tp}.config"), cb.line);
        if let Some(nested) = cb.body.blocks.first() {
            return Err(r.err(
                nested.line,
                format!("task {:?}: config: nested blocks are not supported", t.name),
            ));
        }
        for a in &cb.body.attrs {
            lines.set(format!("{tp}.config.{}", a.key), a.line);
            t.config.insert(a.key.clone(), to_value(&a.val));
        }
    }
    if let Some(lb) = s.block("logs")? {
        let p = format!("{tp}.logs");
        lines.set(p.clone(), lb.line);
        let mut ls = Scope::new(r, &lb.body, "logs".into(), p);
        t.logs = Some(LogConfig {
            max_files: ls.uint("max_files", lines)?.unwrap_or(DEFAULT_LOG_FILES),
            max_file_size_mb: ls
                .uint("max_file_size", lines)?
                .unwrap_or(DEFAULT_LOG_FILE_MB),
        });
        ls.finish()?;
    }
    if let Some(rb) = s.block("resources")? {
        let p = format!("{tp}.resources");
        lines.set(p.clone(), rb.line);
        let mut rs = Scope::new(r, &rb.body, "resources".into(), p);
        t.resources = Some(Resources {
            cpu: rs.uint("cpu", lines)?.unwrap_or(0),
            memory_mb: rs.uint("memory", lines)?.unwrap_or(0),
        });
        rs.finish()?;
    }
    t.services = decode_services(&mut s, lines, &tp)?;
    s.finish()?;
    Ok(t)
}

fn to_value(v: &Val) -> Value {
    let kind = match v {
        Val::Null => None,
        Val::Bool(b) => Some(value::Kind::BoolValue(*b)),
        Val::Int(i) => Some(value::Kind::IntValue(*i)),
        Val::Float(f) => Some(value::Kind::FloatValue(*f)),
        Val::Str(s) => Some(value::Kind::StringValue(s.clone())),
        Val::List(l) => Some(value::Kind::ListValue(ValueList {
            values: l.iter().map(to_value).collect(),
        })),
        Val::Map(m) => Some(value::Kind::MapValue(ValueMap {
            fields: m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        })),
    };
    Value { kind }
}

#[cfg(test)]
#[path = "jobspec_tests.rs"]
mod tests;
