//! HCL into a `Job`: each block and attribute of Nomad's job-spec dialect read with its line,
//! unknown ones refused; partly written blocks keep the type's MAX as "not written" for
//! [`super::canonicalize`] to fill.

use super::*;

pub(super) fn decode_file(r: &Reader, body: &Body, lines: &mut Lines) -> Result<Job, SpecError> {
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
    // Job-level `migrate` and `reschedule` are each group's unless it has its own.
    let defaults = JobDefaults {
        update: job_update,
        migrate: s.block("migrate")?,
        reschedule: s.block("reschedule")?,
    };
    for g in s.blocks("group") {
        job.task_groups.push(decode_group(r, g, &defaults, lines)?);
    }
    job.unimplemented = kept(s.unimplemented(JOB_UNIMPLEMENTED, lines));
    s.finish()?;
    Ok(job)
}

/// Nomad's job-level fields Yurt accepts without implementing them: (job file, JSON).
const JOB_UNIMPLEMENTED: &[(&str, &str)] = &[
    ("all_at_once", "AllAtOnce"),
    ("node_pool", "NodePool"),
    ("affinity", "Affinities"),
    ("spread", "Spreads"),
    ("multiregion", "Multiregion"),
    ("periodic", "Periodic"),
    ("parameterized", "ParameterizedJob"),
    ("vault", "Vault"),
    ("consul", "Consul"),
    ("vault_token", "VaultToken"),
    ("consul_token", "ConsulToken"),
    ("ui", "Ui"),
];

/// As [`JOB_UNIMPLEMENTED`], for a group.
const GROUP_UNIMPLEMENTED: &[(&str, &str)] = &[
    ("affinity", "Affinities"),
    ("spread", "Spreads"),
    ("volume", "Volumes"),
    ("ephemeral_disk", "EphemeralDisk"),
    ("shutdown_delay", "ShutdownDelay"),
    ("stop_after_client_disconnect", "StopAfterClientDisconnect"),
    ("max_client_disconnect", "MaxClientDisconnect"),
    ("scaling", "Scaling"),
    ("consul", "Consul"),
    ("prevent_reschedule_on_lost", "PreventRescheduleOnLost"),
];

/// As [`JOB_UNIMPLEMENTED`], for a task.
const TASK_UNIMPLEMENTED: &[(&str, &str)] = &[
    ("lifecycle", "Lifecycle"),
    ("affinity", "Affinities"),
    ("restart", "RestartPolicy"),
    ("artifact", "Artifacts"),
    ("vault", "Vault"),
    ("consul", "Consul"),
    ("template", "Templates"),
    ("dispatch_payload", "DispatchPayload"),
    ("volume_mount", "VolumeMounts"),
    ("csi_plugin", "CSIPluginConfig"),
    ("leader", "Leader"),
    ("shutdown_delay", "ShutdownDelay"),
    ("kind", "Kind"),
    ("identity", "Identity"),
    ("action", "Actions"),
    ("schedule", "Schedule"),
    ("scaling", "ScalingPolicies"),
];

/// What a job file gives its groups unless they say otherwise.
pub(super) struct JobDefaults<'a> {
    pub(super) update: Option<&'a Blk>,
    pub(super) migrate: Option<&'a Blk>,
    pub(super) reschedule: Option<&'a Blk>,
}

/// Unimplemented fields as the job keeps them (`yurt.v1.Value`s).
fn kept(
    m: std::collections::BTreeMap<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, Value> {
    m.into_iter()
        .filter_map(|(k, v)| {
            serde_json::from_value(crate::nomad_json::wrapped(&v))
                .ok()
                .map(|v| (k, v))
        })
        .collect()
}

pub(super) fn decode_constraints<'a>(
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
        let mut attribute = c.string("attribute", lines)?.unwrap_or_default();
        let mut operator = c.string("operator", lines)?.unwrap_or_else(|| "=".into());
        let mut value = c.string("value", lines)?.unwrap_or_default();
        if let Some(true) = c.boolean("distinct_hosts", lines)? {
            operator = "distinct_hosts".into();
        }
        if let Some(prop) = c.string("distinct_property", lines)? {
            operator = "distinct_property".into();
            attribute = prop;
        }
        for op in crate::constraint::SHORTHANDS {
            if let Some(v) = c.string(op, lines)? {
                operator = op.to_string();
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
pub(super) fn apply_update(
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

pub(super) fn decode_group(
    r: &Reader,
    b: &Blk,
    defaults: &JobDefaults<'_>,
    lines: &mut Lines,
) -> Result<TaskGroup, SpecError> {
    let job_update = defaults.update;
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
    if let Some(m) = s.block("migrate")?.or(defaults.migrate) {
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
    if let Some(rb) = s.block("reschedule")?.or(defaults.reschedule) {
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
    if let Some(db) = s.block("disconnect")? {
        let p = format!("{gp}.disconnect");
        lines.set(p.clone(), db.line);
        let mut ds = Scope::new(r, &db.body, "disconnect".into(), p);
        g.disconnect = Some(Disconnect {
            lost_after_ms: ds.duration_ms("lost_after", lines)?.unwrap_or(0),
            stop_on_client_after_ms: ds.duration_ms("stop_on_client_after", lines)?.unwrap_or(0),
            replace: ds.boolean("replace", lines)?,
            reconcile: ds.string("reconcile", lines)?.unwrap_or_default(),
        });
        ds.finish()?;
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
    g.unimplemented = kept(s.unimplemented(GROUP_UNIMPLEMENTED, lines));
    s.finish()?;
    Ok(g)
}

pub(super) fn decode_services<'a>(
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

pub(super) fn decode_task(
    r: &Reader,
    b: &Blk,
    gp: &str,
    lines: &mut Lines,
) -> Result<Task, SpecError> {
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
        for a in &cb.body.attrs {
            lines.set(format!("{tp}.config.{}", a.key), a.line);
            t.config.insert(a.key.clone(), to_value(&a.val));
        }
        // A block in `config` (`labels { team = "geo" }`) is a map; several of one name, a
        // list of maps.
        let mut from_blocks = std::collections::BTreeSet::new();
        for nested in &cb.body.blocks {
            if !nested.labels.is_empty() || !nested.body.blocks.is_empty() {
                return Err(r.err(
                    nested.line,
                    format!(
                        "task {:?}: config: {} may hold only attributes",
                        t.name, nested.ident
                    ),
                ));
            }
            let map = Value {
                kind: Some(value::Kind::MapValue(ValueMap {
                    fields: nested
                        .body
                        .attrs
                        .iter()
                        .map(|a| (a.key.clone(), to_value(&a.val)))
                        .collect(),
                })),
            };
            let twice =
                t.config.contains_key(&nested.ident) && !from_blocks.contains(&nested.ident);
            if twice {
                return Err(r.err(
                    nested.line,
                    format!("task {:?}: config: {} is given twice", t.name, nested.ident),
                ));
            }
            let entry = match t.config.remove(&nested.ident) {
                None => {
                    lines.set(format!("{tp}.config.{}", nested.ident), nested.line);
                    map
                }
                Some(Value {
                    kind: Some(value::Kind::ListValue(mut l)),
                }) => {
                    l.values.push(map);
                    Value {
                        kind: Some(value::Kind::ListValue(l)),
                    }
                }
                Some(first) => Value {
                    kind: Some(value::Kind::ListValue(ValueList {
                        values: vec![first, map],
                    })),
                },
            };
            from_blocks.insert(nested.ident.clone());
            t.config.insert(nested.ident.clone(), entry);
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
            memory_max_mb: rs.uint("memory_max", lines)?.unwrap_or(0),
        });
        rs.finish()?;
    }
    t.services = decode_services(&mut s, lines, &tp)?;
    t.unimplemented = kept(s.unimplemented(TASK_UNIMPLEMENTED, lines));
    s.finish()?;
    Ok(t)
}

pub(super) fn to_value(v: &Val) -> Value {
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
