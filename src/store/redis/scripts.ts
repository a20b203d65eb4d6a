// The Lua scripts behind the Redis store (src/store/redis/). Each runs atomically in Redis and
// touches keys of one Cluster slot only (one hash tag), so they work in Cluster mode.

/**
 * Reads a session and slides its idle TTL in one round trip. The TTL never passes
 * the absolute expiry carried in the entry's header (OWASP session management:
 * absolute timeout), and an entry past it is deleted at once.
 * KEYS[1] session key; ARGV[1] now (ms); ARGV[2] idle slide (ms, 0 = no slide).
 */
export const READ_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if not v then return nil end
local a = string.find(v, ':', 1, true)
local b = a and string.find(v, ':', a + 1, true)
if not b then return nil end
local remaining = tonumber(string.sub(v, a + 1, b - 1)) - tonumber(ARGV[1])
if remaining <= 0 then
  redis.call('DEL', KEYS[1])
  return nil
end
local slide = tonumber(ARGV[2])
if slide > 0 then
  local ttl = slide
  if remaining < ttl then ttl = remaining end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
-- PTTL after PEXPIRE, not before: with CLIENT TRACKING ... NOLOOP, our own
-- PEXPIRE clears Redis's record that this client read the key, and a read
-- after it records it again, so later changes by others are announced.
return {v, redis.call('PTTL', KEYS[1])}
`

/**
 * Compare-and-set on the session version, so a stale writer can never overwrite
 * a newer entry (for example a rotated refresh token; RFC 9700 §4.14.2).
 * KEYS[1] session key, KEYS[2] refresh journal; ARGV[1] expected version;
 * ARGV[2] new value; ARGV[3] max TTL (ms); ARGV[4] idle slide (ms, 0 = keep the
 * TTL; else at least this, still capped by ARGV[3]). Returns 1 ok, 0 missing,
 * -1 conflict.
 */
export const REPLACE_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local a = string.find(v, ':', 1, true)
if not a or string.sub(v, 1, a - 1) ~= ARGV[1] then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
local slide = tonumber(ARGV[4])
if slide > ttl then ttl = slide end
local cap = tonumber(ARGV[3])
if ttl < 0 or cap < ttl then ttl = cap end
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('DEL', KEYS[2])
-- A read after our own write, so CLIENT TRACKING announces later changes by others (see READ_SCRIPT).
redis.call('PTTL', KEYS[1])
return 1
`

/** KEYS[1] lock, KEYS[2] journal; ARGV[1] token, ARGV[2] lease (ms). Returns {acquired, journal}. */
export const ACQUIRE_SCRIPT = `
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return {ok and 1 or 0, redis.call('GET', KEYS[2])}
`

/**
 * The refresh journal, written only by the lease's holder: a holder whose
 * lease expired (a pause longer than the lease) may find that another one has
 * taken over and is redeeming the same refresh token, so it must not redeem
 * it too (RFC 9700 §4.14.2; security model S78).
 * KEYS[1] lock, KEYS[2] journal; ARGV[1] token, ARGV[2] version, ARGV[3] ttl (ms). Returns 1 written, 0 not the holder.
 */
export const JOURNAL_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`

/** Compare-and-expire / compare-and-delete: only the holder's token may renew or release. */
export const RENEW_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`
/** KEYS[1] index set; ARGV[1] sid; ARGV[2] ms the member lives. Extends the set's TTL, never shortens it. */
export const INDEX_ADD_SCRIPT = `
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`
export const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
