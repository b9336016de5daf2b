//! Prefix affinity: send each turn of a conversation back to the node that
//! served the turn before, whose KV cache still holds the conversation's
//! prefix, without letting one hot prefix pile load onto one node.
//!
//! Three pure parts and one small shared table:
//! - [`prefix_keys`] renders the leading part of a request (tools, system
//!   prompt, instructions, then messages or prompt, in that order) into
//!   fixed-size chunks and hashes them cumulatively: key `i` stands for the
//!   first `(i + 1) * CHUNK` bytes. A later turn of the same conversation
//!   repeats those bytes, so it yields the same leading keys. An explicit
//!   session (`X-Herd-Session`, or OpenAI's `user` field) is one more key
//!   that outranks every prefix.
//! - [`Affinity`] remembers, per model, which node last served each key:
//!   two generations of hash maps, so memory stays under a fixed number of
//!   entries and the least recently used fall out first.
//! - [`bounded`] decides whether the remembered node may take the request:
//!   only while its load after taking it stays within `factor` times the
//!   candidates' mean (consistent hashing with bounded loads), so affinity
//!   never concentrates load beyond that factor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;

/// Bytes of rendered request per key: about 64 tokens, so a system prompt
/// of a few hundred tokens already gives a conversation its own keys.
pub const CHUNK: usize = 256;
/// Keys derived from one request at most: a prefix beyond 64 KiB matches
/// as its first 64 KiB, which is enough to tell conversations apart.
pub const MAX_KEYS: usize = 256;
/// Default bound on remembered keys across all models.
pub const DEFAULT_CAPACITY: usize = 200_000;
/// Default load factor: a node keeps its conversations while its in-flight
/// requests stay within 1.25 × the mean over the candidates.
pub const DEFAULT_FACTOR: f64 = 1.25;

/// The keys of one request, shortest prefix first, and its session key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// `prefix[i]` covers the first `(i + 1) * CHUNK` rendered bytes.
    pub prefix: SmallVec<[u64; 16]>,
    /// From `X-Herd-Session` or the body's `user`.
    pub session: Option<u64>,
}

impl Keys {
    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty() && self.session.is_none()
    }
}

/// The parts of a chat, completion, messages or responses body that make
/// up its prompt, borrowed as they were sent.
#[derive(Deserialize, Default)]
struct Prompt<'a> {
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
}

/// Feeds rendered bytes and emits a cumulative hash at every full chunk.
struct Chunker {
    hasher: std::hash::DefaultHasher,
    filled: usize,
    keys: SmallVec<[u64; 16]>,
}

impl Chunker {
    fn new(model: &str) -> Chunker {
        let mut hasher = std::hash::DefaultHasher::new();
        // The model is part of every key: the same prompt on two models is
        // two different caches.
        hasher.write(model.as_bytes());
        hasher.write_u8(0xff);
        Chunker {
            hasher,
            filled: 0,
            keys: SmallVec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.keys.len() < MAX_KEYS {
            let take = (CHUNK - self.filled).min(bytes.len());
            self.hasher.write(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == CHUNK {
                self.keys.push(self.hasher.finish());
                self.filled = 0;
            }
        }
    }

    /// A separator between parts, so moving bytes from one part to the
    /// next does not give the same keys.
    fn part(&mut self, tag: u8) {
        self.feed(&[0, tag]);
    }
}

fn hash_one(parts: &[&[u8]]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        h.write(p);
        h.write_u8(0xff);
    }
    h.finish()
}

/// The keys of a request body for `model`. A body that is not a JSON object
/// gives none (the node will answer it with its own error); `session` is
/// the `X-Herd-Session` header's value, which wins over the body's `user`.
pub fn prefix_keys(model: &str, body: &[u8], session: Option<&[u8]>) -> Keys {
    let prompt: Prompt = serde_json::from_slice(body).unwrap_or_default();
    let mut c = Chunker::new(model);
    let parts = [
        (b't', prompt.tools),
        (b's', prompt.system),
        (b'i', prompt.instructions),
    ];
    for (tag, part) in parts {
        if let Some(raw) = part {
            c.part(tag);
            c.feed(raw.get().as_bytes());
        }
    }
    if let Some(messages) = &prompt.messages {
        for m in messages {
            c.part(b'm');
            c.feed(m.get().as_bytes());
        }
    }
    for (tag, part) in [(b'p', prompt.prompt), (b'n', prompt.input)] {
        if let Some(raw) = part {
            c.part(tag);
            c.feed(raw.get().as_bytes());
        }
    }
    let session = match (session, prompt.user.as_deref()) {
        (Some(s), _) if !s.is_empty() => Some(hash_one(&[b"session", model.as_bytes(), s])),
        (_, Some(u)) if !u.is_empty() => Some(hash_one(&[b"user", model.as_bytes(), u.as_bytes()])),
        _ => None,
    };
    Keys {
        prefix: c.keys,
        session,
    }
}

/// Where a remembered key points: a node, as it was when it served.
#[derive(Clone, Debug)]
struct Holder {
    node: Arc<str>,
    /// The node's epoch when recorded: a node that leaves routing starts a
    /// new epoch, and what it held before is forgotten.
    epoch: u64,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub node: Arc<str>,
    /// Rendered bytes of the longest prefix matched, or `None` for a
    /// session key.
    pub matched_bytes: Option<usize>,
}

/// The keys are hashes already: a fast fixed hasher is enough.
fn key_hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x6865_7264)
}

struct Generations {
    current: HashMap<u64, Holder, foldhash::fast::FixedState>,
    previous: HashMap<u64, Holder, foldhash::fast::FixedState>,
    epochs: HashMap<Arc<str>, u64>,
}

/// Which node last served each key, bounded in entries.
pub struct Affinity {
    capacity: usize,
    inner: Mutex<Generations>,
    /// Entries dropped to stay under the capacity (for `/metrics`).
    evicted: AtomicU64,
}

impl Affinity {
    pub fn new(capacity: usize) -> Affinity {
        Affinity {
            capacity: capacity.max(2),
            inner: Mutex::new(Generations {
                current: HashMap::with_hasher(key_hasher()),
                previous: HashMap::with_hasher(key_hasher()),
                epochs: HashMap::new(),
            }),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps hold hints only: whatever a panicking holder left is
        // still a valid (if stale) hint.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node holding the session key, else the longest prefix.
    pub fn lookup(&self, keys: &Keys) -> Option<Found> {
        if keys.is_empty() {
            return None;
        }
        let mut g = self.lock();
        let session = keys.session.map(|k| (k, None));
        let prefixes = keys
            .prefix
            .iter()
            .enumerate()
            .rev()
            .map(|(i, k)| (*k, Some((i + 1) * CHUNK)));
        for (key, matched_bytes) in session.into_iter().chain(prefixes) {
            if let Some(holder) = g.get(key) {
                return Some(Found {
                    node: holder.node,
                    matched_bytes,
                });
            }
        }
        None
    }

    /// Remembers that `node` serves these keys from now on.
    pub fn record(&self, keys: &Keys, node: &Arc<str>) {
        if keys.is_empty() {
            return;
        }
        let mut g = self.lock();
        let epoch = g.epochs.get(node).copied().unwrap_or(0);
        let holder = Holder {
            node: node.clone(),
            epoch,
        };
        for key in keys.session.iter().chain(keys.prefix.iter()) {
            g.current.insert(*key, holder.clone());
            if g.current.len() >= self.capacity / 2 {
                let dropped = g.previous.len() as u64;
                g.previous = std::mem::replace(&mut g.current, HashMap::with_hasher(key_hasher()));
                self.evicted.fetch_add(dropped, Ordering::Relaxed);
            }
        }
    }

    /// Forgets everything `node` held: it left routing (gone, not ready,
    /// cordoned), so its cache is no reason to send it anything.
    pub fn forget_node(&self, node: &str) {
        let mut g = self.lock();
        match g.epochs.get_mut(node) {
            Some(e) => *e += 1,
            None => {
                g.epochs.insert(node.into(), 1);
            }
        }
    }

    /// Remembered keys (both generations).
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl Generations {
    /// A live entry for `key`, moved into the current generation when found
    /// in the previous one (it was used again, so it is recent).
    fn get(&mut self, key: u64) -> Option<Holder> {
        let holder = match self.current.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = self.previous.remove(&key)?;
                self.current.insert(key, h.clone());
                h
            }
        };
        let epoch = self.epochs.get(&holder.node).copied().unwrap_or(0);
        if holder.epoch == epoch {
            Some(holder)
        } else {
            self.current.remove(&key);
            None
        }
    }
}

/// Whether the remembered node (index `preferred` into `in_flight`, the
/// candidates' requests in flight) may take one more request: yes while it
/// is among the least loaded (no other node would be a better choice), or
/// while its load after taking it is within `factor` times the mean load
/// over the candidates after this request.
pub fn bounded(in_flight: &[u32], preferred: usize, factor: f64) -> bool {
    let Some(&mine) = in_flight.get(preferred) else {
        return false;
    };
    if in_flight.iter().all(|&other| mine <= other) {
        return true;
    }
    let total: u64 = in_flight.iter().map(|&n| u64::from(n)).sum::<u64>() + 1;
    let mean = total as f64 / in_flight.len() as f64;
    f64::from(mine + 1) <= factor * mean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(system: &str, turns: &[&str]) -> Vec<u8> {
        let mut messages = vec![serde_json::json!({"role": "system", "content": system})];
        for (i, t) in turns.iter().enumerate() {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            messages.push(serde_json::json!({"role": role, "content": t}));
        }
        serde_json::to_vec(&serde_json::json!({"model": "m", "messages": messages})).expect("json")
    }

    #[test]
    fn follow_up_turns_share_the_leading_keys() {
        let system = "You are a careful assistant. ".repeat(40);
        let first = prefix_keys("m", &chat(&system, &["hello"]), None);
        let second = prefix_keys(
            "m",
            &chat(&system, &["hello", "hi there", "and now?"]),
            None,
        );
        assert!(first.prefix.len() >= 4, "{} keys", first.prefix.len());
        assert!(second.prefix.len() > first.prefix.len());
        assert_eq!(first.prefix[..], second.prefix[..first.prefix.len()]);
        let other = prefix_keys("m", &chat(&"Another prompt. ".repeat(60), &["hello"]), None);
        assert_ne!(first.prefix[0], other.prefix[0]);
        // The same prompt on another model is another cache.
        let on_other_model = prefix_keys("n", &chat(&system, &["hello"]), None);
        assert_ne!(first.prefix[0], on_other_model.prefix[0]);
    }

    #[test]
    fn keys_table() {
        let long = "x".repeat(3 * CHUNK);
        let cases: &[(&str, Vec<u8>, Option<&[u8]>, usize, bool)] = &[
            ("not json", b"nope".to_vec(), None, 0, false),
            ("short chat", chat("hi", &["yo"]), None, 0, false),
            (
                "generate prompt",
                serde_json::to_vec(&serde_json::json!({"model": "m", "prompt": long}))
                    .expect("json"),
                None,
                3,
                false,
            ),
            (
                "responses input string",
                serde_json::to_vec(&serde_json::json!({"input": long, "instructions": "be brief"}))
                    .expect("json"),
                None,
                3,
                false,
            ),
            (
                "user field is a session",
                serde_json::to_vec(&serde_json::json!({"prompt": "hi", "user": "u-1"}))
                    .expect("json"),
                None,
                0,
                true,
            ),
            (
                "header is a session",
                chat("hi", &["yo"]),
                Some(b"abc".as_slice()),
                0,
                true,
            ),
            (
                "empty header is none",
                chat("hi", &["yo"]),
                Some(b"".as_slice()),
                0,
                false,
            ),
        ];
        for (name, body, session, prefixes, has_session) in cases {
            let k = prefix_keys("m", body, *session);
            assert_eq!(k.prefix.len(), *prefixes, "{name}");
            assert_eq!(k.session.is_some(), *has_session, "{name}");
        }
    }

    #[test]
    fn keys_are_capped() {
        let huge = "y".repeat(CHUNK * (MAX_KEYS + 10));
        let body = serde_json::to_vec(&serde_json::json!({"prompt": huge})).expect("json");
        assert_eq!(prefix_keys("m", &body, None).prefix.len(), MAX_KEYS);
    }

    #[test]
    fn lookup_finds_the_longest_prefix_and_sessions_win() {
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let t = Affinity::new(1000);
        let system = "S".repeat(2 * CHUNK);
        let short = prefix_keys("m", &chat(&system, &["q1"]), None);
        let long = prefix_keys("m", &chat(&system, &["q1", &"r".repeat(CHUNK), "q2"]), None);
        t.record(&short, &a);
        assert_eq!(t.lookup(&long).map(|f| f.node), Some(a.clone()));
        t.record(&long, &b);
        let found = t.lookup(&long).expect("found");
        assert_eq!(found.node, b);
        assert_eq!(found.matched_bytes, Some(long.prefix.len() * CHUNK));
        // A session key outranks any prefix.
        let mut with_session = long.clone();
        with_session.session = Some(7);
        t.record(
            &Keys {
                prefix: SmallVec::new(),
                session: Some(7),
            },
            &a,
        );
        let found = t.lookup(&with_session).expect("found");
        assert_eq!((found.node, found.matched_bytes), (a, None));
    }

    #[test]
    fn a_node_that_leaves_routing_loses_its_prefixes() {
        let a: Arc<str> = "a".into();
        let t = Affinity::new(1000);
        let keys = prefix_keys("m", &chat(&"S".repeat(2 * CHUNK), &["q"]), None);
        t.record(&keys, &a);
        assert!(t.lookup(&keys).is_some());
        t.forget_node("a");
        assert_eq!(t.lookup(&keys), None);
        // What it serves after coming back is remembered again.
        t.record(&keys, &a);
        assert_eq!(t.lookup(&keys).map(|f| f.node), Some(a));
    }

    #[test]
    fn memory_stays_under_the_capacity() {
        let a: Arc<str> = "a".into();
        let t = Affinity::new(100);
        for i in 0..10_000u64 {
            t.record(
                &Keys {
                    prefix: SmallVec::from_slice(&[i]),
                    session: None,
                },
                &a,
            );
            assert!(t.len() <= 100, "{} entries after {i}", t.len());
        }
        assert!(t.evicted() >= 10_000 - 100);
        // The most recent survive.
        let recent = Keys {
            prefix: SmallVec::from_slice(&[9_999]),
            session: None,
        };
        assert!(t.lookup(&recent).is_some());
    }

    #[test]
    fn bounded_load_table() {
        let cases: &[(&[u32], usize, bool)] = &[
            (&[0, 0], 0, true),  // idle: always
            (&[0, 5], 0, true),  // idle even when others are busy
            (&[1, 0], 0, false), // 2 vs mean 1: over 1.25×
            (&[1, 1], 0, true),  // as idle as any other
            (&[4, 4], 1, true),
            (&[5, 3], 0, false), // 6 vs mean 4.5: 1.33×
            (&[3, 2], 0, false), // 4 vs mean 3: 1.33×
            (&[10, 9], 0, true), // 11 vs mean 10: 1.1×
            (&[4, 4, 4, 4], 2, true),
            (&[6, 4, 4, 4], 0, false),
            (&[5, 4, 4, 4, 4, 4, 4, 4], 0, false), // 6 vs mean 4.25: 1.41×
            (&[3], 0, true),                       // the only candidate
            (&[1, 1], 5, false),                   // no such candidate
        ];
        for (loads, pref, want) in cases {
            assert_eq!(
                bounded(loads, *pref, DEFAULT_FACTOR),
                *want,
                "{loads:?} pref {pref}"
            );
        }
    }

    #[test]
    fn one_hot_prefix_spreads_under_the_bound() {
        // Many clients send the same prompt at once: affinity may keep
        // sending it to its node only while that node stays within the bound.
        let mut in_flight = [0u32; 4];
        let mut holder = 0usize;
        for _ in 0..40 {
            if !bounded(&in_flight, holder, DEFAULT_FACTOR) {
                holder = (0..4).min_by_key(|&i| in_flight[i]).expect("nodes");
            }
            in_flight[holder] += 1;
        }
        let mean = 10.0;
        for n in in_flight {
            assert!(f64::from(n) <= DEFAULT_FACTOR * mean + 1.0, "{in_flight:?}");
        }
    }
}
