//! The linearizability decision for one object's history: Wing and Gong's search with Lowe's
//! memoization (as Porcupine and Knossos run it). The history is a list of call and return
//! events in real-time order; the search linearizes the earliest pending call it can, keeps
//! every (set of operations linearized, state) it has already tried so that no dead end is
//! walked twice, and backtracks when it meets a return whose call is not yet linearized. Without
//! the memo (stateright's tester, used here before) a history with faults, where many writes'
//! outcomes are unknown, takes time exponential in their number: one of 386 operations was not
//! decided in two minutes on two cores. An operation whose outcome is unknown has its return
//! after every other event, so it may take effect anywhere after its call, or never.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: the state after one operation.
pub trait Model: Clone + Eq + Hash {
    type Op;
    type Ret;
    /// The state after `op` answered `ret` (`None`: the answer is unknown, any is fine), or
    /// `None` when this state cannot give that answer.
    fn step(&self, op: &Self::Op, ret: Option<&Self::Ret>) -> Option<Self>;
}

/// One event of a history, naming an operation by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Call(usize),
    Return(usize),
}

/// Whether the history of `ops` (each with its answer, `None` when unknown), whose calls and
/// returns happened in the order of `events`, is linearizable from `init`. An operation without
/// a return in `events` is given one after every other event.
pub fn linearizable<M: Model>(init: M, ops: &[(M::Op, Option<M::Ret>)], events: &[Event]) -> bool {
    let mut list = Events::new(ops.len(), events);
    let mut state = init;
    let mut done = Bits::new(ops.len());
    let mut tried: HashSet<(Bits, M)> = HashSet::new();
    // The calls linearized so far, with the state before each.
    let mut stack: Vec<(usize, M)> = Vec::new();
    let mut at = list.first();
    while !list.is_empty() {
        match list.event[at] {
            Event::Call(op) => {
                let (operation, ret) = &ops[op];
                // An operation whose answer is unknown and that would change nothing here
                // may as well take effect at the very end, where nothing sees it.
                let next = state
                    .step(operation, ret.as_ref())
                    .filter(|next| ret.is_some() || *next != state);
                if let Some(next) = next {
                    done.set(op, true);
                    if tried.insert((done.clone(), next.clone())) {
                        stack.push((at, std::mem::replace(&mut state, next)));
                        list.lift(at);
                        at = list.first();
                        continue;
                    }
                    done.set(op, false);
                }
                at = list.next[at];
            }
            // Only operations whose answer is unknown are left: they take effect at the end.
            Event::Return(op) if ops[op].1.is_none() => return true,
            Event::Return(_) => {
                // This operation had to be linearized before here: undo the last choice.
                let Some((call, before)) = stack.pop() else {
                    return false;
                };
                let Event::Call(op) = list.event[call] else {
                    unreachable!("only calls are linearized")
                };
                done.set(op, false);
                state = before;
                list.unlift(call);
                at = list.next[call];
            }
        }
    }
    true
}

/// A set of operations, by index.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// The events as a doubly linked list between two sentinels, from which a linearized call and
/// its return are lifted and put back in the reverse order.
struct Events {
    event: Vec<Event>,
    /// For a call, the node of its return.
    partner: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    tail: usize,
}

impl Events {
    fn new(ops: usize, events: &[Event]) -> Events {
        let mut event = events.to_vec();
        let mut returned = vec![false; ops];
        let mut called = vec![false; ops];
        for e in events {
            match *e {
                Event::Call(i) => called[i] = true,
                Event::Return(i) => returned[i] = true,
            }
        }
        event.extend(
            (0..ops)
                .filter(|&i| called[i] && !returned[i])
                .map(Event::Return),
        );
        let n = event.len();
        let mut return_at = vec![usize::MAX; ops];
        for (at, e) in event.iter().enumerate() {
            if let Event::Return(i) = *e {
                return_at[i] = at;
            }
        }
        let partner = event
            .iter()
            .map(|e| match *e {
                Event::Call(i) => return_at[i],
                Event::Return(_) => usize::MAX,
            })
            .collect();
        let (head, tail) = (n, n + 1);
        // The sentinels are never read as events.
        event.extend([Event::Return(usize::MAX), Event::Return(usize::MAX)]);
        let mut next = vec![usize::MAX; n + 2];
        let mut prev = vec![usize::MAX; n + 2];
        let order: Vec<usize> = std::iter::once(head).chain(0..n).chain([tail]).collect();
        for pair in order.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        Events {
            event,
            partner,
            next,
            prev,
            head,
            tail,
        }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn is_empty(&self) -> bool {
        self.next[self.head] == self.tail
    }

    fn remove(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn restore(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = at;
        self.prev[n] = at;
    }

    fn lift(&mut self, call: usize) {
        self.remove(call);
        self.remove(self.partner[call]);
    }

    fn unlift(&mut self, call: usize) {
        self.restore(self.partner[call]);
        self.restore(call);
    }
}

#[cfg(test)]
mod tests {
    use super::{linearizable, Event, Model};

    /// A compare-and-set register of numbers; 0 is unset.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct Cas(u32);

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Read,
        Cas(u32, u32),
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Ret {
        Value(u32),
        Written,
        Conflict,
    }

    impl Model for Cas {
        type Op = Op;
        type Ret = Ret;
        fn step(&self, op: &Op, ret: Option<&Ret>) -> Option<Cas> {
            let (answer, next) = match *op {
                Op::Read => (Ret::Value(self.0), self.0),
                Op::Cas(expect, new) if expect == self.0 => (Ret::Written, new),
                Op::Cas(..) => (Ret::Conflict, self.0),
            };
            (ret.is_none() || ret == Some(&answer)).then_some(Cas(next))
        }
    }

    use Event::{Call, Return};

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order_and_unknown_ones_or_never() {
        // 0 writes 1 while 1 reads 0 then 1.
        let ops = [
            (Op::Cas(0, 1), Some(Ret::Written)),
            (Op::Read, Some(Ret::Value(0))),
            (Op::Read, Some(Ret::Value(1))),
        ];
        let events = [Call(0), Call(1), Return(1), Call(2), Return(0), Return(2)];
        assert!(linearizable(Cas(0), &ops, &events));
        // The same read of 0 after the write returned saw the past.
        let late = [Call(0), Return(0), Call(1), Return(1), Call(2), Return(2)];
        assert!(!linearizable(Cas(0), &ops, &late));
        // A write whose answer never came may have happened...
        let ops = [
            (Op::Cas(0, 1), None),
            (Op::Read, Some(Ret::Value(1))),
            (Op::Read, Some(Ret::Value(0))),
        ];
        assert!(linearizable(Cas(0), &ops, &[Call(0), Call(1), Return(1)]));
        // ...or not, but not both, and not before it was sent.
        assert!(linearizable(Cas(0), &ops, &[Call(0), Call(2), Return(2)]));
        let both = [Call(0), Call(1), Return(1), Call(2), Return(2)];
        assert!(!linearizable(Cas(0), &ops, &both));
        let before = [Call(1), Return(1), Call(0)];
        assert!(!linearizable(Cas(0), &ops[..2], &before));
        // An acknowledged write lost.
        let ops = [
            (Op::Cas(0, 1), Some(Ret::Written)),
            (Op::Read, Some(Ret::Value(0))),
        ];
        assert!(!linearizable(
            Cas(0),
            &ops,
            &[Call(0), Return(0), Call(1), Return(1)]
        ));
        assert!(linearizable(Cas(0), &[], &[]));
    }

    /// A history of `clients` clients on a register, each operation taking effect at a random
    /// moment between its call and return; a share of the writes never answer (some of them
    /// took effect). Returns the operations and the events.
    type History = (Vec<(Op, Option<Ret>)>, Vec<Event>);

    fn simulated(seed: u64, clients: usize, steps: usize) -> History {
        let mut rng = seed | 1;
        let mut random = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut value, mut fresh) = (0u32, 0u32);
        let mut ops: Vec<(Op, Option<Ret>)> = Vec::new();
        let mut events = Vec::new();
        // Per client: the last value it read, and its operation in flight (index, applied).
        let mut last = vec![0u32; clients];
        let mut flight: Vec<Option<(usize, bool)>> = vec![None; clients];
        for _ in 0..steps {
            let c = random(clients as u64) as usize;
            match flight[c] {
                None => {
                    fresh += 1;
                    let op = if random(2) == 0 {
                        Op::Read
                    } else {
                        Op::Cas(last[c], fresh)
                    };
                    ops.push((op, None));
                    events.push(Call(ops.len() - 1));
                    flight[c] = Some((ops.len() - 1, false));
                }
                Some((i, false)) => {
                    let ret = match ops[i].0 {
                        Op::Read => {
                            last[c] = value;
                            Ret::Value(value)
                        }
                        Op::Cas(expect, new) if expect == value => {
                            value = new;
                            Ret::Written
                        }
                        Op::Cas(..) => Ret::Conflict,
                    };
                    ops[i].1 = Some(ret);
                    flight[c] = Some((i, true));
                }
                Some((i, true)) => {
                    flight[c] = None;
                    if matches!(ops[i].0, Op::Cas(..)) && random(5) == 0 {
                        ops[i].1 = None;
                    } else {
                        events.push(Return(i));
                    }
                }
            }
        }
        // Writes that never took effect and never answered.
        for (i, _) in flight.into_iter().flatten() {
            if matches!(ops[i].0, Op::Cas(..)) {
                ops[i].1 = None;
            } else {
                events.retain(|e| *e != Call(i));
            }
        }
        (ops, events)
    }

    #[test]
    fn long_histories_with_many_unknown_writes_are_decided_and_a_stale_read_is_caught() {
        let mut stale = 0;
        for seed in 1..=20 {
            let (mut ops, events) = simulated(seed, 6, 3000);
            let unknown = ops.iter().filter(|(_, r)| r.is_none()).count();
            assert!(unknown > 20, "seed {seed}: only {unknown} unknown");
            assert!(linearizable(Cas(0), &ops, &events), "seed {seed}");
            // A read invoked after a write was acknowledged that sees the value it replaced.
            let acknowledged = events.iter().position(|e| match *e {
                Return(i) => ops[i].1 == Some(Ret::Written) && i > 100,
                Call(_) => false,
            });
            let Some(at) = acknowledged else { continue };
            let Return(w) = events[at] else {
                unreachable!()
            };
            let Op::Cas(before, _) = ops[w].0 else {
                unreachable!()
            };
            let read = events[at..].iter().find_map(|e| match *e {
                Call(r) if matches!(ops[r], (Op::Read, Some(_))) => Some(r),
                _ => None,
            });
            let Some(r) = read else { continue };
            ops[r].1 = Some(Ret::Value(before));
            assert!(!linearizable(Cas(0), &ops, &events), "seed {seed}");
            stale += 1;
        }
        assert!(
            stale >= 15,
            "only {stale} histories had a stale read put in"
        );
    }
}
