//! Channel history: the last publications of a channel's stream (see PROTOCOL.md, "Offsets
//! and epochs"), kept so that a client that reconnects can recover what it missed, and so
//! that a client can ask for a backlog.
//!
//! A channel keeps history only if a [`History`] rule of the [`Config`](crate::Config)
//! matches its name. Its [`Log`] holds the encoded frames as they went out (shared with the
//! queues that carried them, so a kept publication costs its entry, not a copy), bounded by
//! count and by age; the hub caps the bytes of every log together (`hub/history.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::Frame;

/// How much of a channel's stream to keep: at most `max_len` publications, none older than
/// `ttl`. Given to [`Config::history`](crate::Config::history) for the channels whose name
/// matches a pattern.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct History {
    /// The most publications kept.
    pub max_len: usize,
    /// How long a publication is kept.
    pub ttl: Duration,
}

impl History {
    /// Keep at most `max_len` publications, each for `ttl`.
    pub fn new(max_len: usize, ttl: Duration) -> Self {
        History { max_len, ttl }
    }
}

/// A rule of [`Config::history`](crate::Config::history): channels whose name matches
/// `pattern` keep `history`. A pattern is a name, or a prefix followed by `*`
/// (`"chat:*"`, or `"*"` for every channel).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HistoryRule {
    /// The channel names it applies to.
    pub pattern: String,
    /// What they keep.
    pub history: History,
}

impl HistoryRule {
    /// Whether `channel` matches the pattern.
    pub fn matches(&self, channel: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.pattern,
        }
    }
}

/// Where a client's view of a channel's stream stands: the next offset it expects in an epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Position {
    /// The offset of the next publication the client has not seen (one more than the last it
    /// saw, or the `offset` of its `subscribed` if it saw none).
    pub since: u64,
    /// The epoch those offsets belong to.
    pub epoch: u64,
}

/// Why a channel's publications since a [`Position`] cannot be recovered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Unrecoverable {
    /// The channel keeps no history.
    NoHistory,
    /// The channel's history was lost since (it was emptied and created again, or the server
    /// restarted): offsets started again.
    EpochChanged,
    /// Some of the publications since are no longer kept (too many since, or too old).
    TooOld,
    /// The position is past the end of the stream: not one this server handed out.
    Ahead,
}

impl Unrecoverable {
    /// The reason as the protocol writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unrecoverable::NoHistory => "no_history",
            Unrecoverable::EpochChanged => "epoch_changed",
            Unrecoverable::TooOld => "too_old",
            Unrecoverable::Ahead => "offset_ahead",
        }
    }
}

/// What [`Hub::join_pinned_from`](crate::Hub::join_pinned_from) did about a returning
/// client's position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Recovery {
    /// It got every publication since, before any live one.
    Recovered,
    /// It could not: it is in the room all the same, and its `subscribed` says why.
    NotRecovered(Unrecoverable),
    /// The channel's history is in the backplane ([`Config::sequenced`](crate::Config::sequenced)),
    /// which was asked: the client joins, recovered or not, when it answers.
    Asked,
}

/// A question for the backplane about a channel whose history it keeps
/// ([`Output::Fetch`](crate::Output::Fetch)): where its stream stands and what it keeps.
/// Answer it with [`Hub::fetched`](crate::Hub::fetched) and its `id`, or `None` if the
/// backplane cannot be reached.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fetch {
    /// Identifies the answer.
    pub id: u64,
    /// The channel's namespace.
    pub namespace: String,
    /// The channel.
    pub room: String,
    /// The offset from which to include the kept publications; `None` for none (only where
    /// the stream stands).
    pub from: Option<u64>,
    /// What the channel keeps (the answer never has more than `max_len`).
    pub history: History,
}

/// A backplane's answer to a [`Fetch`]: the channel's stream as the backplane keeps it.
#[derive(Clone, PartialEq, Debug)]
pub struct Stream {
    /// The stream's epoch.
    pub epoch: u64,
    /// The offset its next publication gets.
    pub next: u64,
    /// Kept publications asked for, each with its offset: consecutive, oldest first, the
    /// last one at `next - 1`.
    pub entries: Vec<(u64, crate::message::Message)>,
}

/// One kept publication.
#[derive(Debug)]
pub(crate) struct Entry {
    pub frame: Frame,
    /// When it is no longer kept.
    pub expires: Instant,
}

/// A channel's kept publications, oldest first, with consecutive offsets from `first`.
#[derive(Debug)]
pub(crate) struct Log {
    pub rule: History,
    pub entries: VecDeque<Entry>,
    /// The offset of `entries[0]` (or of the next publication, when empty).
    pub first: u64,
    /// Until when the room lives on with no members and nothing kept, so that its members
    /// can come back to the same epoch (set when its last member leaves, for `rule.ttl`).
    pub linger: Option<Instant>,
}

impl Log {
    pub fn new(rule: History, first: u64) -> Self {
        Log {
            rule,
            entries: VecDeque::new(),
            first,
            linger: None,
        }
    }

    /// When the room next needs the hub: its oldest entry's expiry, or, with nothing kept,
    /// the end of its lingering.
    pub fn deadline(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.expires).or(self.linger)
    }

    /// Nothing kept and not lingering: nothing to keep the room for.
    pub fn is_spent(&self) -> bool {
        self.entries.is_empty() && self.linger.is_none()
    }

    /// The frames from offset `since` to the end, or why they cannot all be had. `next` is
    /// the channel's next offset.
    pub fn since(
        &self,
        since: u64,
        next: u64,
    ) -> Result<impl Iterator<Item = &Frame>, Unrecoverable> {
        if since > next {
            return Err(Unrecoverable::Ahead);
        }
        if since < self.first {
            return Err(Unrecoverable::TooOld);
        }
        let skip = (since - self.first) as usize;
        Ok(self.entries.iter().skip(skip).map(|e| &e.frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_a_name_or_a_prefix_and_a_star() {
        let rule = |p: &str| HistoryRule {
            pattern: p.into(),
            history: History::new(1, Duration::from_secs(1)),
        };
        assert!(rule("news").matches("news"));
        assert!(!rule("news").matches("news2"));
        assert!(rule("chat:*").matches("chat:"));
        assert!(rule("chat:*").matches("chat:lobby"));
        assert!(!rule("chat:*").matches("chat"));
        assert!(rule("*").matches("anything"));
    }

    #[test]
    fn a_log_answers_from_its_first_offset_to_the_end() {
        let now = Instant::now();
        let mut log = Log::new(History::new(8, Duration::from_secs(1)), 5);
        for n in 0..3 {
            log.entries.push_back(Entry {
                frame: Frame::text(format!("{}", 5 + n)),
                expires: now,
            });
        }
        let texts = |since| -> Result<Vec<String>, Unrecoverable> {
            log.since(since, 8)
                .map(|it| it.filter_map(|f| f.as_text().map(str::to_owned)).collect())
        };
        assert_eq!(texts(5), Ok(vec!["5".into(), "6".into(), "7".into()]));
        assert_eq!(texts(7), Ok(vec!["7".into()]));
        assert_eq!(texts(8), Ok(vec![]));
        assert_eq!(texts(4), Err(Unrecoverable::TooOld));
        assert_eq!(texts(9), Err(Unrecoverable::Ahead));
    }
}
