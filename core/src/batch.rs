//! Batched publishes: items for the same (target, ident) collect until their TTL, then leave
//! as one frame. Items are serialised on arrival, so a flush is one buffer copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::error::Error;
use crate::message::Target;
use crate::timers::{TimerKey, Timers};

/// The two batch shapes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// `{"type":"batch","event":...,"messages":[...]}`.
    Json,
    /// A header line, then one line per item.
    Text,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Json => "JSON",
            Kind::Text => "text",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Batch {
    pub target: Target,
    pub ident: String,
    pub event: String,
    kind: Kind,
    /// Items, comma-joined JSON or newline-joined text.
    buf: Vec<u8>,
    count: usize,
    pub deadline: Instant,
}

impl Batch {
    /// Its shape.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Its items: serialised JSON values joined by commas, or lines joined by `\n`. Text
    /// items were pushed as `&str`, so text is UTF-8.
    pub(crate) fn items(&self) -> &[u8] {
        &self.buf
    }
}

/// Bounds that decide an early flush.
pub(crate) struct Limits {
    pub max_batches: usize,
    pub max_items: usize,
    pub max_bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Batches {
    slab: Slab<Batch>,
    by_key: BTreeMap<(Target, String), usize>,
}

impl Batches {
    /// Adds one serialised item. Returns the batch id if it is full and must flush now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        timers: &mut Timers,
        now: Instant,
        target: Target,
        ident: &str,
        event: &str,
        kind: Kind,
        item: &[u8],
        ttl: Duration,
        limits: &Limits,
    ) -> Result<Option<usize>, Error> {
        let key = (target, ident.to_owned());
        let id = match self.by_key.get(&key) {
            Some(&id) => {
                let existing = self.slab[id].kind;
                if existing != kind {
                    return Err(Error::BatchKindMismatch {
                        ident: key.1,
                        existing: existing.name(),
                    });
                }
                id
            }
            None => {
                if self.slab.len() >= limits.max_batches {
                    return Err(Error::TooManyBatches {
                        limit: limits.max_batches,
                    });
                }
                let deadline = now + ttl;
                let id = self.slab.insert(Batch {
                    target: key.0.clone(),
                    ident: key.1.clone(),
                    event: event.to_owned(),
                    kind,
                    buf: Vec::new(),
                    count: 0,
                    deadline,
                });
                timers.insert(deadline, TimerKey::Batch(id));
                self.by_key.insert(key, id);
                id
            }
        };
        let batch = &mut self.slab[id];
        if batch.count > 0 {
            batch
                .buf
                .push(if kind == Kind::Json { b',' } else { b'\n' });
        }
        batch.buf.extend_from_slice(item);
        batch.count += 1;
        let full = batch.count >= limits.max_items || batch.buf.len() >= limits.max_bytes;
        Ok(full.then_some(id))
    }

    /// Removes a batch (to flush it), disarming its timer.
    pub(crate) fn take(&mut self, timers: &mut Timers, id: usize) -> Option<Batch> {
        let batch = self.slab.try_remove(id)?;
        timers.remove(batch.deadline, TimerKey::Batch(id));
        self.by_key
            .remove(&(batch.target.clone(), batch.ident.clone()));
        Some(batch)
    }

    /// Drops a pending batch. Returns whether there was one.
    pub(crate) fn cancel(&mut self, timers: &mut Timers, target: &Target, ident: &str) -> bool {
        match self.find(target, ident) {
            Some(id) => self.take(timers, id).is_some(),
            None => false,
        }
    }

    /// The id of the pending batch `(target, ident)`.
    pub(crate) fn find(&self, target: &Target, ident: &str) -> Option<usize> {
        self.by_key
            .get(&(target.clone(), ident.to_owned()))
            .copied()
    }

    /// Ids of every pending batch, in key order (for shutdown).
    pub(crate) fn ids(&self) -> Vec<usize> {
        self.by_key.values().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }
}
