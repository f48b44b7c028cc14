//! Channel streams in Redis: the offsets, epochs and history of every channel that keeps
//! history, shared by all nodes (`Config::sequenced`).
//!
//! Each such channel has two keys, named after the cluster's Redis channel, the namespace
//! (length-prefixed, so that `a:b` + `c` and `a` + `b:c` differ) and the room:
//! - `<prefix>:meta:<len>:<namespace>:<room>`, a hash: the stream's `epoch` and `next` offset.
//!   It outlives the last publication by [`Redis::position_ttl`](crate::Redis::position_ttl);
//!   when it is gone (expired, or Redis lost its data), the next use starts a new epoch at
//!   offset 0, so that a client holding an old position is told `epoch_changed`.
//! - `<prefix>:stream:<len>:<namespace>:<room>`, a Redis stream of the kept publications,
//!   entry id `1-<offset>`, fields `e` (the publication as JSON) and `t` (Redis time in ms).
//!   Trimmed to the channel's `max_len` on each publish and, by age, its `ttl`.
//!
//! Both run as Lua scripts, so that numbering, keeping and publishing are one step in Redis:
//! a publish to a channel gets the next offset, goes into the stream and out on the shared
//! Redis channel in the same script, so every node receives a channel's publications in
//! offset order, whichever node published them.

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tidings_core::{Fetch, Message, Stream, Target};

/// The start of both scripts: `now` (Redis time in ms) and the channel's `epoch`, a new one
/// (microseconds of Redis time, below 2^53 so JavaScript reads it exactly) with an empty
/// stream if the channel has none. KEYS: meta, stream.
const EPOCH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'next', 0)
end
"#;

/// After [`EPOCH`]: numbers a publication, keeps it and publishes it to every node.
/// KEYS: meta, stream. ARGV: Redis channel, sending node (JSON string), the publication
/// (JSON), max_len, ttl ms, position ttl ms.
const SEQUENCE: &str = r#"
local offset = redis.call('HINCRBY', KEYS[1], 'next', 1) - 1
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '1-' .. offset, 'e', ARGV[3], 't', now)
local cutoff = now - tonumber(ARGV[5])
for _ = 1, 64 do
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if not first or tonumber(first[2][4]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], first[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[1], '{"node":' .. ARGV[2] .. ',"wire":{"numbered":{"offset":'
  .. offset .. ',"epoch":' .. epoch .. ',"entry":' .. ARGV[3] .. '}}}')
return offset
"#;

/// After [`EPOCH`]: where a channel's stream stands, and its kept publications from an
/// offset on (none if that is empty), not older than ttl.
/// KEYS: meta, stream. ARGV: from offset or "", ttl ms, position ttl ms.
/// Returns epoch, next, then offset and publication for each entry.
const FETCH: &str = r#"
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = {epoch, redis.call('HGET', KEYS[1], 'next')}
if ARGV[1] ~= '' then
  local cutoff = now - tonumber(ARGV[2])
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '1-' .. ARGV[1], '+')) do
    if tonumber(e[2][4]) >= cutoff then
      table.insert(out, string.sub(e[1], 3))
      table.insert(out, e[2][2])
    end
  end
end
return out
"#;

/// A kept publication as the scripts store and publish it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Entry {
    pub target: Target,
    pub message: Message,
}

/// The scripts, loaded into one Redis connection (by SHA, so each call sends only its
/// arguments).
pub(crate) struct Scripts {
    sequence: String,
    fetch: String,
}

impl Scripts {
    pub(crate) async fn load(conn: &mut MultiplexedConnection) -> redis::RedisResult<Self> {
        let load = |body: &'static str| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(format!("{EPOCH}{body}"))
                    .query_async::<String>(&mut conn)
                    .await
            }
        };
        Ok(Scripts {
            sequence: load(SEQUENCE).await?,
            fetch: load(FETCH).await?,
        })
    }
}

/// The keys of a channel: its meta hash and its stream.
fn keys(prefix: &str, namespace: &str, room: &str) -> (String, String) {
    let name = format!("{}:{namespace}:{room}", namespace.len());
    (
        format!("{prefix}:meta:{name}"),
        format!("{prefix}:stream:{name}"),
    )
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The command that numbers, keeps and publishes a publication to a channel that keeps
/// history: one SEQUENCE script call.
/// `None` for what is not a room publication (the core numbers those only).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sequence(
    scripts: &Scripts,
    prefix: &str,
    node: &str,
    entry: &Entry,
    max_len: usize,
    ttl_ms: u64,
    position_ttl: std::time::Duration,
) -> Option<redis::Cmd> {
    let tidings_core::Scope::Room { namespace, room } = &entry.target.scope else {
        return None;
    };
    let (Ok(node), Ok(json)) = (serde_json::to_string(node), serde_json::to_string(entry)) else {
        return None;
    };
    let (meta, stream) = keys(prefix, namespace, room);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&scripts.sequence)
        .arg(2)
        .arg(meta)
        .arg(stream)
        .arg(prefix)
        .arg(node)
        .arg(json)
        .arg(max_len.max(1))
        .arg(ttl_ms.max(1))
        .arg(millis(position_ttl).max(ttl_ms));
    Some(cmd)
}

/// Reads a channel's stream for the hub's `fetch`. `Ok(None)` if what Redis holds cannot be
/// read as a stream (not written by this version).
pub(crate) async fn fetch(
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    prefix: &str,
    fetch: &Fetch,
    position_ttl: std::time::Duration,
) -> redis::RedisResult<Option<Stream>> {
    let (meta, stream) = keys(prefix, &fetch.namespace, &fetch.room);
    let ttl = millis(fetch.history.ttl);
    let reply: Vec<String> = redis::cmd("EVALSHA")
        .arg(&scripts.fetch)
        .arg(2)
        .arg(meta)
        .arg(stream)
        .arg(fetch.from.map_or(String::new(), |o| o.to_string()))
        .arg(ttl)
        .arg(millis(position_ttl).max(ttl))
        .query_async(conn)
        .await?;
    Ok(parse(&reply))
}

/// The FETCH script's reply as a stream.
fn parse(reply: &[String]) -> Option<Stream> {
    let [epoch, next, rest @ ..] = reply else {
        return None;
    };
    let mut entries = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        let offset: u64 = pair[0].parse().ok()?;
        let entry: Entry = serde_json::from_str(&pair[1]).ok()?;
        entries.push((offset, entry.message));
    }
    Some(Stream {
        epoch: epoch.parse().ok()?,
        next: next.parse().ok()?,
        entries,
    })
}
