//! A slow link: a TCP proxy that holds every byte one side sends for a while before passing
//! it on (the other way is passed at once). [`crate::Net::delay`] sends one link's new
//! connections through it with a `DNAT` rule and ends the link's open connections so that they
//! are made again through it. The kernel's `netem` would do this per packet, but this kernel has
//! no `sch_netem` (`tc qdisc add dev lo root netem delay 1ms`: "Specified qdisc kind is
//! unknown"), so the delay is made here, as etcd's robustness tests do with their proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A proxy at work until dropped.
pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Every connection it holds, both ends, to be shut down when it stops.
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// The bytes it has held and passed on.
    held: Arc<AtomicU64>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `ip` (a port of its own) and passes what it is sent to `to`, `by` later.
    pub fn start(ip: &str, to: SocketAddr, by: Duration) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).expect("the delay proxy listens");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(AtomicU64::new(0));
        let (flag, conns, count) = (stop.clone(), open.clone(), held.clone());
        let accepting = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((near, _)) => relay(near, to, by, &conns, &count),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Proxy {
            addr,
            stop,
            open,
            held,
            accepting: Some(accepting),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many bytes it has held and passed on so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Connects `near` to `to`: what `near` sends arrives `by` later, the answers at once.
fn relay(
    near: TcpStream,
    to: SocketAddr,
    by: Duration,
    open: &Mutex<Vec<TcpStream>>,
    held: &Arc<AtomicU64>,
) {
    let _ = near.set_nonblocking(false);
    let Ok(far) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
        let _ = near.shutdown(Shutdown::Both);
        return;
    };
    let _ = (near.set_nodelay(true), far.set_nodelay(true));
    let (Ok(near2), Ok(far2), Ok(near3), Ok(far3)) = (
        near.try_clone(),
        far.try_clone(),
        near.try_clone(),
        far.try_clone(),
    ) else {
        return;
    };
    open.lock().unwrap().extend([near3, far3]);
    // Held: read as it comes, each chunk written once its time is up.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let mut reader = near;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send((Instant::now() + by, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let mut writer = far;
    let held = held.clone();
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            // Counted before they are written: whoever has seen them arrive sees them counted.
            held.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            if writer.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    // The answers, at once.
    let (mut from, mut back) = (far2, near2);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut back);
        let _ = back.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_proxy_passes_everything_on_in_order_and_holds_only_one_way() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < 6 {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            s.write_all(&buf[..n]).unwrap();
        }
        got
    });
    let proxy = Proxy::start("127.0.0.1", to, Duration::from_millis(300));
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    let sent = Instant::now();
    c.write_all(b"abc").unwrap();
    c.write_all(b"def").unwrap();
    let mut back = [0u8; 6];
    c.read_exact(&mut back).unwrap();
    // Held for the delay on the way there; the echo comes back at once.
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert_eq!(&back, b"abcdef");
    assert_eq!(echo.join().unwrap(), b"abcdef");
    assert_eq!(proxy.held(), 6);
    drop(proxy);
}
