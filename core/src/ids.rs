//! Identifiers the hub hands out: connections and server-side acks.
//!
//! A [`ConnId`] is a slab key plus a generation. Slab slots are reused, so a bare key kept
//! after its connection closed could address a newer connection; the generation makes such a
//! stale id simply unknown.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies one connection for as long as it lives, and never another one afterwards.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(index: usize, generation: u32) -> Self {
        // The slab never grows past `max_connections`, which `Config::validate` keeps < u32::MAX.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        ConnId { index, generation }
    }

    /// The connection's slot in the hub: dense, reused after the connection is gone (the
    /// generation tells a reuse apart). Drivers can index per-connection tables by it.
    pub fn index(self) -> usize {
        self.index as usize
    }

    pub(crate) fn generation(self) -> u32 {
        self.generation
    }

    /// The id as one number, for logs and maps outside the hub.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Rebuilds an id from [`ConnId::to_u64`]. An id that never existed is merely unknown.
    pub fn from_u64(raw: u64) -> Self {
        ConnId {
            index: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.index, self.generation)
    }
}

/// Parses the [`Display`](fmt::Display) form `index.generation`, as the `welcome` frame
/// carries it, so a client's id can be matched to the server's.
impl std::str::FromStr for ConnId {
    type Err = ParseConnIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, generation) = s.split_once('.').ok_or(ParseConnIdError)?;
        Ok(ConnId {
            index: index.parse().map_err(|_| ParseConnIdError)?,
            generation: generation.parse().map_err(|_| ParseConnIdError)?,
        })
    }
}

/// A string that is not a [`ConnId`] (`index.generation`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("not a connection id (expected `index.generation`)")]
pub struct ParseConnIdError;

/// Identifies one server→client request for acknowledgement.
///
/// Ack ids are drawn from one hub-wide counter, so a broadcast with ack carries the same id to
/// every recipient (its frame is encoded once) and each recipient's answer is told apart by
/// its [`ConnId`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct AckId(pub u64);

impl fmt::Display for AckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_round_trips_through_u64() {
        let id = ConnId::new(7, 3);
        assert_eq!(ConnId::from_u64(id.to_u64()), id);
        assert_eq!(id.to_string(), "7.3");
        assert_eq!(format!("{id:?}"), "ConnId(7.3)");
        assert_eq!(AckId(12).to_string(), "12");
        assert_ne!(ConnId::new(7, 4), id);
        assert_eq!("7.3".parse::<ConnId>(), Ok(id));
        for bad in ["", "7", "7.", ".3", "7.3.1", "-1.3", "a.b", "99999999999.0"] {
            assert_eq!(bad.parse::<ConnId>(), Err(ParseConnIdError), "{bad:?}");
        }
    }
}
