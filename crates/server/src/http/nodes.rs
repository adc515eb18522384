//! Nodes in Nomad's shapes: `GET /v1/nodes` as list stubs (`Address`, `NodePool`, `Drivers`,
//! `NodeResources` with `?resources=true`, the `os.*` attributes with `?os=true`, `prefix`)
//! and `GET /v1/node/:id` whole, with the same `Address`, `NodePool` and `NodeResources`; a
//! client's host usage (`GET /v1/client/stats`) and garbage collection (`/v1/client/gc`),
//! `node_id=` naming the client (none: this agent's own).

use super::*;

/// Yurt has no node pools: every node is in Nomad's `default` pool.
const NODE_POOL: &str = "default";

/// The host a node's agent is reached at (its RPC address without the port).
fn address(n: &Node) -> String {
    n.rpc_addr
        .rsplit_once(':')
        .map_or(n.rpc_addr.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Nomad's `NodeResources` of a node.
fn node_resources(n: &Node) -> Value {
    let r = n.resources.unwrap_or_default();
    serde_json::json!({
        "Cpu": { "CpuShares": r.cpu },
        "Memory": { "MemoryMB": r.memory_mb },
        "Disk": { "DiskMB": 0 },
        "Networks": null,
    })
}

/// `GET /v1/nodes`.
pub(super) async fn list(api: &Api, rq: &Rq, q: &str) -> Answer {
    let prefix = query(q, "prefix")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    let (resources, os) = (flag(q, "resources")?, flag(q, "os")?);
    let nodes = Nodes::list(api, rq.of(ListNodesRequest {}))
        .await?
        .into_inner()
        .nodes;
    let stubs: Vec<Value> = nodes
        .iter()
        .filter(|n| n.id.starts_with(&prefix))
        .map(|n| {
            let mut stub = serde_json::json!({
                "ID": n.id,
                "Name": n.name,
                "Address": address(n),
                "Datacenter": n.datacenter,
                "NodeClass": n.node_class,
                "NodePool": NODE_POOL,
                "Version": n.version,
                "Drain": n.drain,
                "SchedulingEligibility": n.scheduling_eligibility,
                "Status": n.status,
                "StatusDescription": "",
                "Drivers": n
                    .drivers
                    .iter()
                    .map(|(name, d)| (name.clone(), json(d).unwrap_or(Value::Null)))
                    .collect::<serde_json::Map<String, Value>>(),
                "LastDrain": null,
                "CreateIndex": n.create_index,
                "ModifyIndex": n.modify_index,
            });
            if resources {
                stub["NodeResources"] = node_resources(n);
            }
            if os {
                let attrs: serde_json::Map<String, Value> = n
                    .attributes
                    .iter()
                    .filter(|(k, _)| k.starts_with("os."))
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                stub["Attributes"] = Value::Object(attrs);
            }
            stub
        })
        .collect();
    Ok(Value::Array(stubs))
}

/// `GET /v1/node/:id`.
pub(super) async fn one(api: &Api, rq: &Rq, id: &str) -> Answer {
    let node = Nodes::get(
        api,
        rq.of(GetNodeRequest {
            node_id: id.to_string(),
            heartbeats: false,
        }),
    )
    .await?
    .into_inner();
    let mut v = json(&node)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("Address".into(), Value::from(address(&node)));
        m.insert("NodePool".into(), Value::from(NODE_POOL));
        m.insert("NodeResources".into(), node_resources(&node));
    }
    Ok(v)
}

/// `GET /v1/client/stats`, as Nomad's `HostStats`.
pub(super) async fn host_stats(api: &Api, rq: &Rq, q: &str) -> Answer {
    let node_id = query(q, "node_id")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    let s = Nodes::host_stats(api, rq.of(NodeEvaluateRequest { node_id }))
        .await?
        .into_inner();
    let m = s.memory.unwrap_or_default();
    let cpus: Vec<Value> = s
        .cpus
        .iter()
        .map(|c| {
            serde_json::json!({
                "CPU": c.cpu, "User": c.user, "System": c.system, "Idle": c.idle, "Total": c.total,
            })
        })
        .collect();
    let disks: Vec<Value> = s
        .disks
        .iter()
        .map(|d| {
            serde_json::json!({
                "Mountpoint": d.mountpoint, "Size": d.size, "Used": d.used,
                "Available": d.available, "UsedPercent": d.used_percent,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "Memory": { "Total": m.total, "Available": m.available, "Used": m.used, "Free": m.free },
        "CPU": cpus,
        "DiskStats": disks,
        "Uptime": s.uptime_s,
        "Timestamp": s.timestamp_unix_ms.saturating_mul(1_000_000),
    }))
}

/// `/v1/client/gc`: the client forgets its terminal allocations now.
pub(super) async fn client_gc(api: &Api, rq: &Rq, q: &str) -> Answer {
    let node_id = query(q, "node_id")
        .map(decoded)
        .transpose()?
        .unwrap_or_default();
    Nodes::client_gc(api, rq.of(NodeEvaluateRequest { node_id })).await?;
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_rpc_host() {
        let n = |a: &str| Node {
            rpc_addr: a.into(),
            ..Node::default()
        };
        assert_eq!(address(&n("10.0.0.5:4647")), "10.0.0.5");
        assert_eq!(address(&n("[::1]:4647")), "::1");
        assert_eq!(address(&n("")), "");
    }
}
