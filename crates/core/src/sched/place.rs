//! Placement: feasibility (readiness, datacenters, constraints), the nodes' usage, ports, and
//! the choice of a node among a sample of feasible ones (bin packing or spread).

use super::*;

/// What one placement asks for: allocation `idx` of a group of a job.
pub(super) struct Placement<'r, 'a> {
    pub job: &'r Job,
    pub group: &'r TaskGroup,
    /// Its index in the group (its name's `[idx]`).
    pub idx: u32,
    /// The allocation it replaces, if any.
    pub previous: &'r str,
    /// The one node it may go on (a system job's), instead of any feasible one.
    pub only: Option<&'a Node>,
    /// Counted as a new placement (`create`), not as part of an update or a migration.
    pub count_as_place: bool,
    /// Nodes used only when no other fits (where it failed before).
    pub avoid: &'r [String],
}

impl<'r, 'a> Placement<'r, 'a> {
    /// A new allocation, counted as a placement, on any feasible node.
    pub(super) fn new(job: &'r Job, group: &'r TaskGroup, idx: u32) -> Self {
        Placement {
            job,
            group,
            idx,
            previous: "",
            only: None,
            count_as_place: true,
            avoid: &[],
        }
    }

    /// Replacing `previous`.
    pub(super) fn replacing(self, previous: &'r str) -> Self {
        Placement { previous, ..self }
    }

    /// Counted with an update or a migration rather than as a placement.
    pub(super) fn not_counted(self) -> Self {
        Placement {
            count_as_place: false,
            ..self
        }
    }

    /// On this node only.
    pub(super) fn on(self, node: &'a Node) -> Self {
        Placement {
            only: Some(node),
            ..self
        }
    }

    /// Avoiding these nodes unless nothing else fits.
    pub(super) fn avoiding(self, avoid: &'r [String]) -> Self {
        Placement { avoid, ..self }
    }
}

impl<'a> Run<'a, '_> {
    /// Why a node cannot take an allocation of the group (before resources), if it cannot.
    pub(super) fn filter(&self, job: &Job, g: &TaskGroup, node: &Node) -> Result<(), String> {
        if !crate::state::takes_placements(node) {
            return Err("node not ready or not eligible".into());
        }
        self.constraints(job, g, node)
    }

    /// Whether a node matches the job's datacenters and constraints (whatever its eligibility).
    pub(super) fn constraints(&self, job: &Job, g: &TaskGroup, node: &Node) -> Result<(), String> {
        if !job
            .datacenters
            .iter()
            .any(|d| dc_matches(d, &node.datacenter))
        {
            return Err("missing compatible datacenter".into());
        }
        if !g.tasks.iter().all(|t| has_driver(node, &t.driver)) {
            return Err("missing drivers".into());
        }
        let group_level = g.constraints.len();
        let all = g.constraints.iter().chain(&job.constraints);
        for (i, c) in all.enumerate() {
            // A group's constraint counts the group's allocations; a job's, the whole job's.
            let scope = (i < group_level).then_some(g.name.as_str());
            match c.operator.as_str() {
                "distinct_hosts" => {
                    if self.live_of_job(job, scope).any(|a| a.node_id == node.id) {
                        return Err("distinct_hosts".into());
                    }
                }
                "distinct_property" => {
                    let limit = c.value.parse::<usize>().unwrap_or(1).max(1);
                    let Some(mine) = resolve(&c.attribute, node) else {
                        return Err(format!("{} distinct_property", c.attribute));
                    };
                    let same = self
                        .live_of_job(job, scope)
                        .filter(|a| {
                            self.state
                                .nodes
                                .get(&a.node_id)
                                .and_then(|n| resolve(&c.attribute, n))
                                .is_some_and(|v| v == mine)
                        })
                        .count();
                    if same >= limit {
                        return Err(format!("{} distinct_property", c.attribute));
                    }
                }
                op => {
                    let mut cache = self.regexes.borrow_mut();
                    let regex = if op == "regexp" {
                        cache
                            .entry(c.value.clone())
                            .or_insert_with(|| regex::Regex::new(&c.value).ok())
                            .as_ref()
                    } else {
                        None
                    };
                    let left = resolve(&c.attribute, node);
                    let right = resolve(&c.value, node).unwrap_or_default();
                    if op == "regexp" && regex.is_none()
                        || !constraint::holds(op, left.as_deref(), &right, regex)
                    {
                        return Err(format!("{} {} {}", c.attribute, c.operator, c.value));
                    }
                }
            }
        }
        Ok(())
    }

    /// The job's allocations that will run after this run (of one group, if given): live ones
    /// it does not stop, and its own placements.
    pub(super) fn live_of_job<'s>(
        &'s self,
        job: &'s Job,
        group: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Allocation> + 's {
        // This run's version of an allocation replaces the state's (stopped or updated).
        let touched: BTreeSet<&str> = self.out.allocs.iter().map(|a| a.id.as_str()).collect();
        let live = self
            .state
            .job_allocs(&job.namespace, &job.id)
            .into_iter()
            .filter(move |a| !alloc_terminal(a) && !touched.contains(a.id.as_str()));
        let planned = self
            .out
            .allocs
            .iter()
            .filter(|a| a.job_id == job.id && a.desired_status == ALLOC_DESIRED_RUN);
        live.chain(planned)
            .filter(move |a| group.is_none_or(|g| a.task_group == g))
    }

    /// CPU and memory of a node taken by live allocations and by this run's placements.
    pub(super) fn used(&self, node: &Node) -> (u64, u64) {
        let used = self.usage.get(&node.id);
        (
            used.map_or(0, |u| u.cpu.max(0) as u64),
            used.map_or(0, |u| u.memory_mb.max(0) as u64),
        )
    }

    /// Resources on a node not taken by live allocations or by this run's placements.
    pub(super) fn free(&self, node: &Node) -> (i64, i64) {
        let total = node.resources.unwrap_or_default();
        let used = self.usage.get(&node.id);
        (
            i64::from(total.cpu) - used.map_or(0, |u| u.cpu),
            i64::from(total.memory_mb) - used.map_or(0, |u| u.memory_mb),
        )
    }

    /// The group's ports on `node`: its static ports if free, and the lowest free dynamic port
    /// for each of the others. The error names the dimension that ran out.
    pub(super) fn assign_ports(&self, g: &TaskGroup, node: &Node) -> Result<Vec<Port>, String> {
        if g.networks.is_empty() {
            return Ok(Vec::new());
        }
        let mut used = self
            .usage
            .get(&node.id)
            .map(|u| u.ports.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for n in &g.networks {
            for p in &n.reserved_ports {
                if !used.insert(p.value) {
                    return Err(format!(
                        "network: reserved port collision {}={}",
                        p.label, p.value
                    ));
                }
                out.push(p.clone());
            }
        }
        for n in &g.networks {
            for p in &n.dynamic_ports {
                let value = DYNAMIC_PORTS
                    .clone()
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| "network: dynamic port range exhausted".to_string())?;
                used.insert(value);
                out.push(Port {
                    label: p.label.clone(),
                    value,
                    to: p.to,
                });
            }
        }
        Ok(out)
    }

    /// Places one allocation (`p`) on the best feasible node; returns its position in the
    /// run's allocations, or `None` (counted as queued) when no node fits.
    pub(super) fn place(&mut self, p: Placement<'_, 'a>) -> Option<usize> {
        let Placement {
            job,
            group: g,
            idx,
            previous,
            only,
            count_as_place,
            avoid,
        } = p;
        let need = group_resources(g);
        let mut metric = AllocMetric::default();
        let mut best: Option<(f64, usize, &'a Node)> = None;
        // Score a sample of the feasible nodes (about log2 of the cluster, at least 2), found
        // from where the last placement landed: a full node is passed over once, not every time.
        let n = self.nodes.len();
        let (looks, limit) = match only {
            Some(_) => (1, 1),
            None => (n, sample_size(n)),
        };
        let mut feasible = 0;
        for i in 0..looks {
            if feasible >= limit {
                break;
            }
            let at = (self.cursor + i) % n.max(1);
            let node: &'a Node = match only {
                Some(node) => node,
                None => self.nodes[at],
            };
            metric.nodes_evaluated += 1;
            if let Err(why) = self.filter(job, g, node) {
                metric.nodes_filtered += 1;
                *metric.constraint_filtered.entry(why).or_default() += 1;
                continue;
            }
            let (cpu, mem) = self.free(node);
            // The state machine's rule of room (`state::fits`), per dimension for the metric.
            let total = node.resources.unwrap_or_default();
            let (used_cpu, used_mem) = self.used(node);
            let exhausted = if !crate::state::fits(&total, 0, used_mem + u64::from(need.memory_mb))
            {
                Some("memory")
            } else if !crate::state::fits(&total, used_cpu + u64::from(need.cpu), 0) {
                Some("cpu")
            } else {
                None
            };
            if let Some(dim) = exhausted {
                metric.nodes_exhausted += 1;
                *metric.dimension_exhausted.entry(dim.into()).or_default() += 1;
                continue;
            }
            if let Err(why) = self.assign_ports(g, node) {
                metric.nodes_exhausted += 1;
                *metric.dimension_exhausted.entry(why).or_default() += 1;
                continue;
            }
            feasible += 1;
            // What the node would have left after this placement, as fractions (0 to 2).
            let total = node.resources.unwrap_or_default();
            let left = (cpu - i64::from(need.cpu)) as f64 / f64::from(total.cpu.max(1))
                + (mem - i64::from(need.memory_mb)) as f64 / f64::from(total.memory_mb.max(1));
            // Bin packing prefers the fullest node, spread the emptiest.
            let fit = if self.spread { left } else { 2.0 - left };
            let penalty = if avoid.contains(&node.id) { 3.0 } else { 0.0 };
            let score = fit - penalty;
            if best.is_none_or(|(s, _, _)| score > s) {
                best = Some((score, at, node));
            }
        }
        let Some((score, at, node)) = best else {
            metric.nodes_available = self.state.nodes.len() as u32;
            let f = self.out.failed.entry(g.name.clone()).or_default();
            f.nodes_evaluated = f.nodes_evaluated.max(metric.nodes_evaluated);
            f.nodes_filtered = f.nodes_filtered.max(metric.nodes_filtered);
            f.nodes_exhausted = f.nodes_exhausted.max(metric.nodes_exhausted);
            f.nodes_available = metric.nodes_available;
            for (k, v) in metric.constraint_filtered {
                let e = f.constraint_filtered.entry(k).or_default();
                *e = (*e).max(v);
            }
            for (k, v) in metric.dimension_exhausted {
                let e = f.dimension_exhausted.entry(k).or_default();
                *e = (*e).max(v);
            }
            *self.out.queued.entry(g.name.clone()).or_default() += 1;
            return None;
        };
        if only.is_none() {
            self.cursor = at;
        }
        let ports = self.assign_ports(g, node).unwrap_or_default();
        let alloc = Allocation {
            ports,
            id: (self.new_id)(),
            eval_id: self.eval_id.into(),
            name: format!("{}.{}[{idx}]", job.id, g.name),
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            job_id: job.id.clone(),
            namespace: job.namespace.clone(),
            job: None,
            task_group: g.name.clone(),
            resources: Some(need),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: ALLOC_PENDING.into(),
            previous_allocation: previous.into(),
            deployment_id: if job.r#type == JOB_TYPE_SERVICE {
                self.active_deployment_id()
            } else {
                String::new()
            },
            memory_oversubscription: self.oversubscribe,
            score,
            ..Allocation::default()
        };
        self.usage.entry(node.id.clone()).or_default().add(&alloc);
        self.out.allocs.push(alloc);
        if count_as_place {
            self.desired(&g.name).place += 1;
        }
        Some(self.out.allocs.len() - 1)
    }
}

/// What the allocations on one node take.
#[derive(Debug, Clone, Default)]
pub(super) struct Usage {
    cpu: i64,
    memory_mb: i64,
    ports: BTreeSet<u32>,
}

impl Usage {
    /// Every node's usage by its live allocations, in one pass over the state.
    pub(super) fn of_state(state: &State) -> BTreeMap<String, Usage> {
        let mut out: BTreeMap<String, Usage> = BTreeMap::new();
        // A pass over the map is cheaper than looking up each open row by ID.
        for a in state.allocs.values().filter(|a| !alloc_terminal(a)) {
            match out.get_mut(&a.node_id) {
                Some(u) => u.add(a),
                None => {
                    let mut u = Usage::default();
                    u.add(a);
                    out.insert(a.node_id.clone(), u);
                }
            }
        }
        out
    }

    pub(super) fn add(&mut self, a: &Allocation) {
        let r = a.resources.unwrap_or_default();
        self.cpu += i64::from(r.cpu);
        self.memory_mb += i64::from(r.memory_mb);
        self.ports.extend(a.ports.iter().map(|p| p.value));
    }

    pub(super) fn remove(&mut self, a: &Allocation) {
        let r = a.resources.unwrap_or_default();
        self.cpu -= i64::from(r.cpu);
        self.memory_mb -= i64::from(r.memory_mb);
        for p in &a.ports {
            self.ports.remove(&p.value);
        }
    }
}

/// How many feasible nodes a placement scores: about log2 of the cluster, at least 2.
pub(super) fn sample_size(nodes: usize) -> usize {
    (usize::BITS - nodes.leading_zeros()).max(2) as usize
}

/// Where an evaluation starts looking at nodes: spread over the cluster by its ID, the same
/// for the same evaluation.
pub(super) fn start_offset(eval_id: &str, nodes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    eval_id.hash(&mut h);
    (h.finish() % nodes.max(1) as u64) as usize
}

pub(super) fn dc_matches(pattern: &str, dc: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => dc.starts_with(prefix),
        None => pattern == dc,
    }
}

/// Whether a node can run tasks of `driver`: its fingerprint found the driver and found it
/// healthy. A client of 0.1.0 reports no fingerprints; its `driver.NAME` attribute
/// says what it runs.
pub(crate) fn has_driver(node: &Node, driver: &str) -> bool {
    if node.drivers.is_empty() {
        return node
            .attributes
            .get(&format!("driver.{driver}"))
            .is_some_and(|v| v != "0" && v != "false");
    }
    node.drivers
        .get(driver)
        .is_some_and(|d| d.detected && d.healthy)
}

/// Resolves `${attr.x}`, `${node.datacenter}`, `${node.unique.name}`, `${node.unique.id}`,
/// `${node.class}` and `${meta.x}` against a node; anything else is a literal.
pub(super) fn resolve(term: &str, node: &Node) -> Option<String> {
    let Some(inner) = term.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(term.to_string());
    };
    match inner {
        "node.datacenter" => Some(node.datacenter.clone()),
        "node.unique.name" => Some(node.name.clone()),
        "node.unique.id" => Some(node.id.clone()),
        "node.class" => Some(node.node_class.clone()),
        _ => match inner.strip_prefix("meta.") {
            Some(key) => node.meta.get(key).cloned(),
            None => {
                let key = inner.strip_prefix("attr.").unwrap_or(inner);
                node.attributes.get(key).cloned()
            }
        },
    }
}
