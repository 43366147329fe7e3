//! The Lua scripts that make a stream's multi-key moves atomic.
//!
//! Redis runs a script alone, so a check and the write it guards cannot be
//! separated by another client's command (no full stream over-filled, no
//! entry both renewed and claimed).

use std::sync::LazyLock;

use switchyard_io_reactor::redis::Script;

/// Adds an entry unless the stream and its delayed set hold `max_len`.
/// KEYS: stream, delayed. ARGV: max_len, item, label, at (unix ms).
/// Returns the new id, or nil when full.
pub(super) static SEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', 'item', ARGV[2], 'label', ARGV[3], 'attempt', '1', 'at', ARGV[4])
",
    )
});

/// Moves entries whose retry delay is over back into the stream.
/// KEYS: delayed, stream. ARGV: now (unix ms), most to move.
/// Returns how many moved.
pub(super) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local e = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'item', e.item, 'label', e.label, 'attempt', e.attempt, 'at', e.at)
  redis.call('ZREM', KEYS[1], member)
end
return #due
",
    )
});

/// Renews this consumer's lease on entries it still holds: resets their
/// idle time, but only for entries it still owns (one another consumer
/// claimed stays claimed).
/// KEYS: stream. ARGV: group, consumer, ids...
/// Returns how many were renewed.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local renewed = 0
for i = 3, #ARGV do
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #owned == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
",
    )
});

/// Moves dead letters back into the stream as fresh entries (attempt 1).
/// KEYS: dead, stream. ARGV: now (unix ms), ids...
/// Returns how many moved (ids no longer there are skipped).
pub(super) static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local moved = 0
for i = 2, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 1 then
    local fields = found[1][2]
    local e = {}
    for j = 1, #fields, 2 do e[fields[j]] = fields[j + 1] end
    redis.call('XADD', KEYS[2], '*', 'item', e.item, 'label', e.label, 'attempt', '1', 'at', ARGV[1])
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
",
    )
});
