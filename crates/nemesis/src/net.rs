//! The nemesis's faults. Each run's agents live on their own loopback addresses (a block
//! `127.A.B.0/24` per [`Net`], bound with `-bind`; an agent's outgoing connections start from
//! its bind address too), so that a packet filter rule names one link:
//! [`Net::cut`] drops what one agent sends another (one way), [`Net::partition`] both ways
//! between two sides, [`Net::heal`] removes the run's rules. Rules are `iptables` rules in the
//! `OUTPUT` chain (loopback traffic passes it once; [`Net::lossy`] drops a share of a link's
//! packets at random; [`Net::delay`] sends a link through a [`Proxy`] that holds what it
//! carries, by a `DNAT` rule in the `nat` table) tagged with the process's PID: a [`Net`]
//! removes its own when dropped, and the rules of processes that died are swept before any new
//! one is added. [`Paused`]
//! stops a process (SIGSTOP) until it is dropped; [`SmallDisk`] is a size-limited file system
//! for a data dir, filled and freed on demand. Without `iptables` a [`Net`] panics with one
//! sentence naming the package.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::delay::Proxy;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The comment every rule of this process carries.
fn tag() -> String {
    format!("yurt-nemesis-{}", std::process::id())
}

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| {
            format!("the nemesis needs iptables (apt-get install iptables, as root): {e}")
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the rules of processes that no longer run (one killed before its cleanup).
fn sweep() {
    for table in ["filter", "nat"] {
        if let Ok(rules) = iptables(&["-t", table, "-S", "OUTPUT"]) {
            sweep_table(table, &rules);
        }
    }
}

fn sweep_table(table: &str, rules: &str) {
    for rule in rules.lines() {
        let Some(pid) = rule
            .split("yurt-nemesis-")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let delete = rule.replacen("-A OUTPUT", "-D OUTPUT", 1);
            let args = shell_words(&delete);
            let args: Vec<&str> = ["-t", table]
                .into_iter()
                .chain(args.iter().map(String::as_str))
                .collect();
            let _ = iptables(&args);
        }
    }
}

/// `iptables -S` output split into arguments (its comments are quoted).
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

static BLOCKS: AtomicU8 = AtomicU8::new(1);

/// One run's addresses and the rules it has put in place.
pub struct Net {
    block: String,
    /// The rules in place.
    rules: Mutex<Vec<Rule>>,
    /// The proxies of delayed links.
    proxies: Mutex<Vec<Proxy>>,
}

/// One rule: its table, its match (what follows `-I OUTPUT`, before the comment), its target.
#[derive(Clone, PartialEq)]
struct Rule {
    table: &'static str,
    matching: Vec<String>,
    target: Vec<String>,
}

impl Rule {
    fn drop(matching: Vec<String>) -> Rule {
        Rule {
            table: "filter",
            matching,
            target: vec!["DROP".into()],
        }
    }
}

impl Net {
    /// A block of loopback addresses of this run's own (`127.A.B.1` to `.254`).
    pub fn new() -> Net {
        sweep();
        iptables(&["-S", "OUTPUT"]).unwrap_or_else(|e| panic!("{e}"));
        let a = 100 + (std::process::id() % 100) as u8;
        let b = BLOCKS.fetch_add(1, Ordering::Relaxed);
        Net {
            block: format!("127.{a}.{b}"),
            rules: Mutex::new(Vec::new()),
            proxies: Mutex::new(Vec::new()),
        }
    }

    /// The `k`-th address of the block (1 to 254).
    pub fn ip(&self, k: u8) -> String {
        format!("{}.{k}", self.block)
    }

    fn rule(op: &str, rule: &Rule) -> Result<String, String> {
        let tag = tag();
        let mut args = vec!["-t", rule.table, op, "OUTPUT"];
        args.extend(rule.matching.iter().map(String::as_str));
        args.extend(["-m", "comment", "--comment", &tag, "-j"]);
        args.extend(rule.target.iter().map(String::as_str));
        iptables(&args)
    }

    fn add(&self, rule: Rule) {
        let mut rules = self.rules.lock().unwrap();
        if !rules.contains(&rule) {
            Net::rule("-I", &rule).unwrap_or_else(|e| panic!("{e}"));
            rules.push(rule);
        }
    }

    /// Drops every packet `from` sends `to` (addresses; the other way is untouched).
    pub fn cut(&self, from: &str, to: &str) {
        self.add(Rule::drop(vec![
            "-s".into(),
            from.into(),
            "-d".into(),
            to.into(),
        ]));
    }

    /// Holds for `by` every byte `from` (an address) sends the listener at `to` (its address
    /// and port; the answers are not held), until [`Net::heal`]. The link's open connections
    /// are ended so that they are made again through the delay.
    pub fn delay(&self, from: &str, to: SocketAddr, by: Duration) {
        let proxy = Proxy::start(&self.ip(253), to, by);
        let (ip, port) = (to.ip().to_string(), to.port().to_string());
        self.add(Rule {
            table: "nat",
            matching: ["-s", from, "-d", &ip, "-p", "tcp", "--dport", &port]
                .map(String::from)
                .to_vec(),
            target: vec![
                "DNAT".into(),
                "--to-destination".into(),
                proxy.addr().to_string(),
            ],
        });
        self.proxies.lock().unwrap().push(proxy);
        end_connections(from, &ip, &port);
    }

    /// The bytes the delayed links of this run have held and passed on since they were last
    /// healed.
    pub fn delayed(&self) -> u64 {
        self.proxies.lock().unwrap().iter().map(Proxy::held).sum()
    }

    /// Drops a share (0 to 1) of the packets `from` sends `to`, at random.
    pub fn lossy(&self, from: &str, to: &str, share: f64) {
        self.add(Rule::drop(vec![
            "-s".into(),
            from.into(),
            "-d".into(),
            to.into(),
            "-m".into(),
            "statistic".into(),
            "--mode".into(),
            "random".into(),
            "--probability".into(),
            format!("{share}"),
        ]));
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&self, one: &[&str], other: &[&str]) {
        for a in one {
            for b in other {
                self.cut(a, b);
                self.cut(b, a);
            }
        }
    }

    /// Removes every rule of this run and stops its proxies (the connections through them
    /// end, and are made again directly).
    pub fn heal(&self) {
        let mut rules = self.rules.lock().unwrap();
        for rule in rules.drain(..) {
            let _ = Net::rule("-D", &rule);
        }
        self.proxies.lock().unwrap().clear();
    }
}

impl Default for Net {
    fn default() -> Net {
        Net::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.heal();
    }
}

/// Ends the TCP connections from `from` to `ip:port` (`ss -K`, Debian's iproute2).
fn end_connections(from: &str, ip: &str, port: &str) {
    let status = Command::new("ss")
        .args(["-K", "src", from, "dst", ip, "dport", "=", port])
        .output();
    if let Err(e) = status {
        panic!("the nemesis ends connections with ss (apt-get install iproute2): {e}");
    }
}

/// The host part of an address (`127.A.B.k` of `127.A.B.k:port`).
pub fn host_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .map_or(addr.to_string(), |(h, _)| h.to_string())
}

/// A process stopped with SIGSTOP until this is dropped (or [`Paused::resume`]).
pub struct Paused(Option<i32>);

impl Paused {
    pub fn new(pid: i32) -> Paused {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        Paused(Some(pid))
    }

    pub fn resume(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.resume();
    }
}

/// A small file system (tmpfs of `mb` MiB) mounted at a directory, to be filled: a server's
/// data dir on it runs out of space when [`SmallDisk::fill`] says. Unmounted when dropped.
pub struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(path: &std::path::Path, mb: u32) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "a small disk is a tmpfs mounted as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    fn filler(&self) -> std::path::PathBuf {
        self.path.join("nemesis-fill")
    }

    /// Fills the file system to its last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..1]).is_ok() {}
    }

    /// Fills the file system until `leave` bytes are free.
    pub fn fill_leaving(&self, leave: u64) {
        use std::io::Write;
        let s = nix::sys::statvfs::statvfs(&self.path).unwrap();
        let free = (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64);
        let mut left = free.saturating_sub(leave);
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn an_address_s_host_and_iptables_rules_read_back_into_their_arguments() {
    assert_eq!(host_of("127.1.2.3:4646"), "127.1.2.3");
    let words = shell_words(
        "-A OUTPUT -s 127.1.2.3/32 -d 127.1.2.4/32 -m comment --comment \"yurt-nemesis-7\" -j DROP",
    );
    assert_eq!(words[9], "yurt-nemesis-7");
    assert_eq!(words.len(), 12);
}
