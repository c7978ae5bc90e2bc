//! Live state in Redis, shared by every room-service replica.
//!
//! Keys (`{room}` is `tenant/name`):
//! - `confer:placement:{room}:{region}`: the placement, JSON, written with `SET NX`
//! - `confer:sfu-rooms:{sfu}`: rooms placed on an SFU
//! - `confer:members:{room}`: hash, participant id → participant JSON
//! - `confer:participant:{id}`: the room a participant is in
//! - `confer:active`: set of active rooms
//! - `confer:departed:{id}`: a participant that left without meaning to, and its
//!   room, JSON, kept for it to come back as it was; it expires by itself
//! - `confer:kept:{room}`: sorted set, the ids of the participants kept for the room,
//!   each scored with when its time runs out (Unix milliseconds)
//! - `confer:identity-join:{room}:{identity}`: held (a random token) while one join
//!   of the identity reads the room and takes its place; it expires by itself
//! - `confer:gateways`: gateways that hold (or held) participants
//! - `confer:gateway-participants:{gateway}`: set of the participants it holds
//! - `confer:gateway-lease:{gateway}`: present while a room service serves the
//!   gateway's watch; it expires by itself
//! - stream `confer:gateway-commands:{id}`: commands for one gateway, the newest
//!   [`GATEWAY_STREAM_LEN`] kept (for a gateway whose watch broke to take up again
//!   where it stopped), and dropped [`GATEWAY_STREAM_TTL_SECS`] after the last
//!   command

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamRangeReply, StreamReadReply};

use crate::api::{GatewayCommand, Watched};
use crate::clock::unix_millis_i64;
use crate::error::{RoomError, RoomResult};
use crate::model::{ParticipantInfo, Placement};

const ACTIVE: &str = "confer:active";
const GATEWAYS: &str = "confer:gateways";
/// Deletes `KEYS[1]` only while its value is `ARGV[1]` (a hold's token, a turn's
/// message), in one step.
const DELETE_IF_HELD_BY: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub struct RedisLive {
    client: redis::Client,
    conn: ConnectionManager,
}

fn placement_key(room_key: &str, region: &str) -> String {
    format!("confer:placement:{room_key}:{region}")
}

fn sfu_rooms_key(sfu: &str) -> String {
    format!("confer:sfu-rooms:{sfu}")
}

/// The rooms placed on an SFU, as `room_key\tregion` members.
fn sfu_placements_key(sfu: &str) -> String {
    format!("confer:sfu-placements:{sfu}")
}

fn members_key(room_key: &str) -> String {
    format!("confer:members:{room_key}")
}

fn participant_key(id: &str) -> String {
    format!("confer:participant:{id}")
}

fn gateway_participants_key(gateway: &str) -> String {
    format!("confer:gateway-participants:{gateway}")
}

fn departed_key(id: &str) -> String {
    format!("confer:departed:{id}")
}

fn kept_key(room_key: &str) -> String {
    format!("confer:kept:{room_key}")
}

/// What `confer:departed:{id}` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Departed {
    room: String,
    participant: ParticipantInfo,
}

fn identity_hold_key(room_key: &str, identity: &str) -> String {
    format!("confer:identity-join:{room_key}:{identity}")
}

fn slow_mode_key(room_key: &str, identity: &str) -> String {
    format!("confer:slow-mode:{room_key}:{identity}")
}

fn lease_key(gateway: &str) -> String {
    format!("confer:gateway-lease:{gateway}")
}

fn gateway_stream(gateway: &str) -> String {
    format!("confer:gateway-commands:{gateway}")
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> RoomResult<T> {
    serde_json::from_str(json).map_err(RoomError::internal)
}

fn encode<T: serde::Serialize>(value: &T) -> RoomResult<String> {
    serde_json::to_string(value).map_err(RoomError::internal)
}

impl RedisLive {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        // TCP_NODELAY: several commands are often in flight on one connection, and
        // Nagle's algorithm would hold each write until the previous one is acknowledged.
        let info = redis::IntoConnectionInfo::into_connection_info(url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(Self { client, conn })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn place(&self, room_key: &str, candidate: Placement) -> RoomResult<Placement> {
        let key = placement_key(room_key, &candidate.region);
        let mut conn = self.conn();
        let won: bool = redis::cmd("SET")
            .arg(&key)
            .arg(encode(&candidate)?)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if won {
            let member = format!("{room_key}\t{}", candidate.region);
            redis::pipe()
                .incr(sfu_rooms_key(&candidate.sfu), 1)
                .ignore()
                .sadd(sfu_placements_key(&candidate.sfu), member)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            return Ok(candidate);
        }
        let held: Option<String> = conn.get(&key).await?;
        match held {
            Some(json) => decode(&json),
            // Cleared between our SET and GET: the room just emptied; try again.
            None => Box::pin(self.place(room_key, candidate)).await,
        }
    }

    pub async fn placement(&self, room_key: &str, region: &str) -> RoomResult<Option<Placement>> {
        let held: Option<String> = self.conn().get(placement_key(room_key, region)).await?;
        held.as_deref().map(decode).transpose()
    }

    pub async fn clear_placement(&self, room_key: &str, region: &str) -> RoomResult<()> {
        let mut conn = self.conn();
        let held: Option<String> = redis::cmd("GETDEL")
            .arg(placement_key(room_key, region))
            .query_async(&mut conn)
            .await?;
        if let Some(json) = held {
            let placement: Placement = decode(&json)?;
            redis::pipe()
                .decr(sfu_rooms_key(&placement.sfu), 1)
                .ignore()
                .srem(
                    sfu_placements_key(&placement.sfu),
                    format!("{room_key}\t{region}"),
                )
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    pub async fn rooms_placed_on(&self, sfu: &str) -> RoomResult<Vec<(String, String)>> {
        let members: Vec<String> = self.conn().smembers(sfu_placements_key(sfu)).await?;
        Ok(members
            .iter()
            .filter_map(|m| m.split_once('\t'))
            .map(|(key, region)| (key.to_owned(), region.to_owned()))
            .collect())
    }

    pub async fn rooms_on(&self, sfus: &[String]) -> RoomResult<Vec<u64>> {
        if sfus.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = sfus.iter().map(|sfu| sfu_rooms_key(sfu)).collect();
        let counts: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn())
            .await?;
        Ok(counts
            .into_iter()
            .map(|n| u64::try_from(n.unwrap_or(0)).unwrap_or(0))
            .collect())
    }

    pub async fn put_participant(&self, room_key: &str, info: &ParticipantInfo) -> RoomResult<()> {
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .hset(members_key(room_key), &info.id, encode(info)?)
            .ignore()
            .set(participant_key(&info.id), room_key)
            .ignore()
            .sadd(gateway_participants_key(&info.gateway), &info.id)
            .ignore()
            .sadd(GATEWAYS, &info.gateway)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn keep_departed(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
        ttl: Duration,
    ) -> RoomResult<()> {
        let kept = encode(&Departed {
            room: room_key.to_owned(),
            participant: participant.clone(),
        })?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let now_ms = unix_millis_i64();
        let until_ms = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        let room = kept_key(room_key);
        redis::pipe()
            .atomic()
            .pset_ex(departed_key(&participant.id), kept, ttl_ms)
            .ignore()
            .zrembyscore(&room, "-inf", now_ms)
            .ignore()
            .zadd(&room, &participant.id, until_ms)
            .ignore()
            // The room's grace is the same for all, so the last one kept is the last to go.
            .pexpire(&room, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    pub async fn take_departed(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        let mut conn = self.conn();
        let kept: Option<String> = conn.get_del(departed_key(id)).await?;
        let Some(departed) = kept.map(|json| decode::<Departed>(&json)).transpose()? else {
            return Ok(None);
        };
        let () = conn.zrem(kept_key(&departed.room), id).await?;
        Ok(Some((departed.room, departed.participant)))
    }

    pub async fn departed_in(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrangebyscore(kept_key(room_key), unix_millis_i64(), "+inf")
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| departed_key(id)).collect();
        // One taken meanwhile, or run out, is gone: left out.
        let kept: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut departed = Vec::with_capacity(kept.len());
        for json in kept.into_iter().flatten() {
            let one = decode::<Departed>(&json)?;
            if one.room == room_key {
                departed.push(one.participant);
            }
        }
        Ok(departed)
    }

    pub async fn kept_for(&self, room_key: &str) -> RoomResult<Option<Duration>> {
        let now_ms = unix_millis_i64();
        // Scores are doubles to Redis (exact for milliseconds since the epoch).
        let latest: Vec<(String, f64)> = self
            .conn()
            .zrevrangebyscore_limit_withscores(kept_key(room_key), "+inf", now_ms, 0, 1)
            .await?;
        Ok(latest.first().map(|(_, until_ms)| {
            let left_ms = (*until_ms as i64).saturating_sub(now_ms);
            Duration::from_millis(u64::try_from(left_ms).unwrap_or_default())
        }))
    }

    pub async fn participant(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        let mut conn = self.conn();
        let room: Option<String> = conn.get(participant_key(id)).await?;
        let Some(room) = room else {
            return Ok(None);
        };
        let json: Option<String> = conn.hget(members_key(&room), id).await?;
        match json {
            Some(json) => Ok(Some((room, decode(&json)?))),
            None => Ok(None),
        }
    }

    pub async fn participants(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        let values: Vec<String> = self.conn().hvals(members_key(room_key)).await?;
        let mut members = values
            .iter()
            .map(|json| decode::<ParticipantInfo>(json))
            .collect::<RoomResult<Vec<_>>>()?;
        members.sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
        Ok(members)
    }

    pub async fn remove_participant(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
    ) -> RoomResult<bool> {
        let mut conn = self.conn();
        let (removed,): (i64,) = redis::pipe()
            .atomic()
            .hdel(members_key(room_key), &participant.id)
            .del(participant_key(&participant.id))
            .ignore()
            .srem(
                gateway_participants_key(&participant.gateway),
                &participant.id,
            )
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(removed == 1)
    }

    /// Ids listed for `gateway` whose participant is gone (a write Redis lost) are
    /// dropped from its set on the way.
    pub async fn participants_of(&self, gateway: &str) -> RoomResult<Vec<String>> {
        let mut conn = self.conn();
        let key = gateway_participants_key(gateway);
        let ids: Vec<String> = conn.smembers(&key).await?;
        let (held, stale) = split_by_key(&mut conn, ids, participant_key).await?;
        if !stale.is_empty() {
            let _: i64 = conn.srem(&key, &stale).await?;
        }
        Ok(held)
    }

    pub async fn hold_identity(
        &self,
        room_key: &str,
        identity: &str,
        ttl: Duration,
    ) -> RoomResult<Option<String>> {
        let token = format!("{:016x}", rand::random::<u64>());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held = redis::cmd("SET")
            .arg(identity_hold_key(room_key, identity))
            .arg(&token)
            .arg("PX")
            .arg(ttl_ms)
            .arg("NX")
            .query_async::<Option<String>>(&mut self.conn())
            .await?
            .is_some();
        Ok(held.then_some(token))
    }

    pub async fn take_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
        wait: Duration,
    ) -> RoomResult<Duration> {
        // Taken if free; a message that took it may come again (a resend); anything
        // else gets the time left.
        const TAKE: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then \
             return 0 end if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end \
             local left = redis.call('PTTL', KEYS[1]) if left < 1 then return 1 end \
             return left";
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let left: i64 = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(1)
            .arg(slow_mode_key(room_key, identity))
            .arg(message)
            .arg(wait_ms)
            .query_async(&mut self.conn())
            .await?;
        Ok(Duration::from_millis(u64::try_from(left).unwrap_or(1)))
    }

    /// Deletes the turn only while `message` holds it, in one step.
    pub async fn give_back_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
    ) -> RoomResult<()> {
        let _: i64 = redis::cmd("EVAL")
            .arg(DELETE_IF_HELD_BY)
            .arg(1)
            .arg(slow_mode_key(room_key, identity))
            .arg(message)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Deletes the hold only while it is still `token`'s, in one step.
    pub async fn release_identity(
        &self,
        room_key: &str,
        identity: &str,
        token: &str,
    ) -> RoomResult<()> {
        let _: i64 = redis::cmd("EVAL")
            .arg(DELETE_IF_HELD_BY)
            .arg(1)
            .arg(identity_hold_key(room_key, identity))
            .arg(token)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    pub async fn renew_lease(&self, gateway: &str, ttl: Duration) -> RoomResult<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let () = self.conn().pset_ex(lease_key(gateway), 1, ttl_ms).await?;
        Ok(())
    }

    pub async fn unleased_gateways(&self) -> RoomResult<Vec<String>> {
        let mut conn = self.conn();
        let gateways: Vec<String> = conn.smembers(GATEWAYS).await?;
        let (_, unleased) = split_by_key(&mut conn, gateways, lease_key).await?;
        Ok(unleased)
    }

    /// Removes `gateway` from [`GATEWAYS`] only while it holds no one, in one step,
    /// so a participant joining through it meanwhile keeps it tracked.
    pub async fn forget_gateway(&self, gateway: &str) -> RoomResult<()> {
        const FORGET_IF_EMPTY: &str = "if redis.call('SCARD', KEYS[2]) == 0 then \
             return redis.call('SREM', KEYS[1], ARGV[1]) end return 0";
        let _: i64 = redis::cmd("EVAL")
            .arg(FORGET_IF_EMPTY)
            .arg(2)
            .arg(GATEWAYS)
            .arg(gateway_participants_key(gateway))
            .arg(gateway)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    pub async fn activate(&self, room_key: &str) -> RoomResult<bool> {
        let added: i64 = self.conn().sadd(ACTIVE, room_key).await?;
        Ok(added == 1)
    }

    pub async fn deactivate(&self, room_key: &str) -> RoomResult<bool> {
        let removed: i64 = self.conn().srem(ACTIVE, room_key).await?;
        Ok(removed == 1)
    }

    pub async fn is_active(&self, room_key: &str) -> RoomResult<bool> {
        Ok(self.conn().sismember(ACTIVE, room_key).await?)
    }

    pub async fn publish(&self, gateway: &str, command: &GatewayCommand) -> RoomResult<()> {
        let key = gateway_stream(gateway);
        let () = redis::pipe()
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(GATEWAY_STREAM_LEN)
            .arg("*")
            .arg(COMMAND_FIELD)
            .arg(encode(command)?)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(GATEWAY_STREAM_TTL_SECS)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// `gateway`'s commands after the cursor `after` (a stream entry id), or after
    /// the newest one now. The stream ends when Redis cannot be read; the gateway
    /// watches again after the last cursor it got.
    pub async fn subscribe(
        &self,
        gateway: &str,
        after: Option<String>,
    ) -> RoomResult<BoxStream<'static, Watched>> {
        let key = gateway_stream(gateway);
        // A connection of its own: a blocked read holds up whatever else is sent on one.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let start = match after {
            Some(cursor) if is_entry_id(&cursor) => cursor,
            Some(cursor) => {
                return Err(RoomError::invalid(
                    "invalid_cursor",
                    format!("{cursor:?} is not a cursor this room service gave"),
                ));
            }
            None => newest_id(&mut conn, &key).await?,
        };
        let first = Watched {
            cursor: start.clone(),
            command: None,
        };
        let reader = CommandReader {
            conn,
            key,
            cursor: start,
            ready: VecDeque::new(),
        };
        let commands = futures_util::stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        });
        Ok(futures_util::stream::once(async { first })
            .chain(commands)
            .boxed())
    }
}

/// `names` split in one round trip into those whose key (`key_of`) exists and those
/// whose key does not.
async fn split_by_key(
    conn: &mut ConnectionManager,
    names: Vec<String>,
    key_of: impl Fn(&str) -> String,
) -> RoomResult<(Vec<String>, Vec<String>)> {
    if names.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut exists = redis::pipe();
    for name in &names {
        exists.exists(key_of(name));
    }
    let present: Vec<bool> = exists.query_async(conn).await?;
    let (with, without): (Vec<_>, Vec<_>) = names
        .into_iter()
        .zip(present)
        .partition(|(_, present)| *present);
    let names_of = |pairs: Vec<(String, bool)>| pairs.into_iter().map(|(name, _)| name).collect();
    Ok((names_of(with), names_of(without)))
}

/// Commands kept per gateway for a watch to take up again: far more than a gateway
/// is sent while it watches again (a room-service replica restarting, a failover).
const GATEWAY_STREAM_LEN: usize = 10_000;

/// A gateway's stream outlives its last command this long: a gateway gone for good
/// leaves nothing behind.
const GATEWAY_STREAM_TTL_SECS: i64 = 3_600;

/// The longest a read of a gateway's stream waits for a command.
const READ_BLOCK: Duration = Duration::from_secs(5);

/// The stream entry's field holding the command's JSON.
const COMMAND_FIELD: &str = "c";

/// Whether `cursor` is a stream entry id, `<ms>-<seq>`.
fn is_entry_id(cursor: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    cursor
        .split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

/// The id of `key`'s newest entry, or `0-0` when it has none.
async fn newest_id(conn: &mut MultiplexedConnection, key: &str) -> RoomResult<String> {
    let newest: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(newest
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |entry| entry.id))
}

/// Reads one gateway's stream after its cursor.
struct CommandReader {
    conn: MultiplexedConnection,
    key: String,
    cursor: String,
    ready: VecDeque<Watched>,
}

impl CommandReader {
    /// The next command; `None` once Redis cannot be read.
    async fn next(&mut self) -> Option<Watched> {
        loop {
            if let Some(watched) = self.ready.pop_front() {
                return Some(watched);
            }
            let read: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&self.cursor)
                .query_async(&mut self.conn)
                .await
                .map_err(|err| tracing::warn!(%err, "cannot read a gateway's commands"))
                .ok()?;
            for entry in read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                self.cursor.clone_from(&entry.id);
                let command = entry
                    .get::<String>(COMMAND_FIELD)
                    .and_then(|json| decode::<GatewayCommand>(&json).ok());
                if command.is_none() {
                    tracing::warn!(id = %entry.id, "an unreadable gateway command");
                }
                // Passed on either way: the gateway's cursor moves past it.
                self.ready.push_back(Watched {
                    cursor: entry.id,
                    command,
                });
            }
        }
    }
}
