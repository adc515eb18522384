//! The rules of a canonical job (a pure function of the `Job`): what each field may hold, and
//! what fields must agree on; the first broken rule is a [`Problem`] naming the field's path.

use super::*;

/// Places a job in the cluster's `region`: a job without one of its own (the default,
/// `global`) gets it; a job for another region is refused (a Yurt cluster is one region).
pub fn place_in_region(job: &mut Job, region: &str) -> Result<(), Problem> {
    if job.region == "global" {
        job.region = region.to_string();
    }
    if job.region != region {
        return Err(Problem {
            path: "job.region".into(),
            message: format!(
                "{:?} is not this cluster's region {region:?} (Yurt has one region)",
                job.region
            ),
        });
    }
    Ok(())
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
    if let Some(d) = &g.disconnect {
        validate_disconnect(job, d, &format!("{gp}.disconnect"))?;
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

fn validate_disconnect(job: &Job, d: &Disconnect, p: &str) -> Result<(), Problem> {
    let fail = |path: String, message: String| Err(Problem { path, message });
    if d.lost_after_ms > 0 && d.stop_on_client_after_ms > 0 {
        return fail(
            p.to_string(),
            "disconnect: lost_after and stop_on_client_after cannot both be set".into(),
        );
    }
    if d.stop_on_client_after_ms > 0 && job.r#type == JOB_TYPE_SYSTEM {
        return fail(
            format!("{p}.stop_on_client_after"),
            "job type \"system\" does not allow disconnect.stop_on_client_after".into(),
        );
    }
    if !d.reconcile.is_empty() && !RECONCILE_STRATEGIES.contains(&d.reconcile.as_str()) {
        return fail(
            format!("{p}.reconcile"),
            format!(
                "disconnect.reconcile {:?} is not one of {}",
                d.reconcile,
                RECONCILE_STRATEGIES.join(", ")
            ),
        );
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
    crate::limits::check_name("driver", &t.driver).or_else(|m| fail(format!("{tp}.driver"), m))?;
    // Another driver's config is its own: a node without that driver never gets the task
    // (placement fails with "missing drivers", as in Nomad).
    let Some(keys) = driver_config_keys(&t.driver) else {
        return validate_task_rest(t, tp, ports);
    };
    let unknown = |k: &String| {
        Err(Problem {
            path: format!("{tp}.config.{k}"),
            message: format!(
                "config: unknown field {k:?} for the {} driver (it takes {})",
                t.driver,
                keys.join(", ")
            ),
        })
    };
    if t.driver == "docker" {
        if let Some(k) = t.config.keys().find(|k| !keys.contains(&k.as_str())) {
            return unknown(k);
        }
        super::docker::validate(t, tp, ports)?;
        return validate_task_rest(t, tp, ports);
    }
    if let Some(k) = t.config.keys().find(|k| !keys.contains(&k.as_str())) {
        return unknown(k);
    }
    for key in ["pid_mode", "ipc_mode"] {
        match t.config.get(key).and_then(|v| v.kind.as_ref()) {
            None => {}
            Some(value::Kind::StringValue(m)) if m == "private" || m == "host" => {}
            Some(_) => {
                return fail(
                    format!("{tp}.config.{key}"),
                    format!("config.{key} must be \"private\" or \"host\""),
                )
            }
        }
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
    validate_task_rest(t, tp, ports)
}

/// The `config` keys of the drivers Yurt has (`None`: a driver it does not have).
pub(crate) fn driver_config_keys(driver: &str) -> Option<&'static [&'static str]> {
    match driver {
        "raw_exec" => Some(&["command", "args"]),
        "exec" => Some(&["command", "args", "pid_mode", "ipc_mode"]),
        "docker" => Some(super::docker::KEYS),
        _ => None,
    }
}

/// A task's rules that hold whatever its driver.
fn validate_task_rest(t: &Task, tp: &str, ports: &HashMap<String, ()>) -> Result<(), Problem> {
    let fail = |path: String, message: String| Err(Problem { path, message });
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
    if r.memory_max_mb != 0 && r.memory_max_mb < r.memory_mb {
        return fail(
            format!("{tp}.resources.memory_max"),
            format!(
                "resources.memory_max ({} MB) must be at least memory ({} MB)",
                r.memory_max_mb, r.memory_mb
            ),
        );
    }
    for s in &t.services {
        validate_service(s, &format!("{tp}.service[{}]", s.name), ports)?;
    }
    Ok(())
}
