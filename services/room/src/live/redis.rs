//! Live state in Redis, shared by every room-service replica.
//!
//! Keys (`{room}` is `tenant/name`):
//! - `confer:placement:{room}:{region}`: the placement, JSON, written with `SET NX`
//! - `confer:sfu-rooms:{sfu}`: rooms placed on an SFU
//! - `confer:members:{room}`: hash, participant id → participant JSON
//! - `confer:participant:{id}`: the room a participant is in
//! - `confer:active`: set of active rooms
//! - channel `confer:gateway:{id}`: commands for one gateway

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;

use crate::api::GatewayCommand;
use crate::error::{RoomError, RoomResult};
use crate::model::{ParticipantInfo, Placement};

const ACTIVE: &str = "confer:active";

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

fn gateway_channel(gateway: &str) -> String {
    format!("confer:gateway:{gateway}")
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
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
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

    pub async fn remove_participant(&self, room_key: &str, id: &str) -> RoomResult<bool> {
        let mut conn = self.conn();
        let (removed,): (i64,) = redis::pipe()
            .atomic()
            .hdel(members_key(room_key), id)
            .del(participant_key(id))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(removed == 1)
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
        let _: i64 = self
            .conn()
            .publish(gateway_channel(gateway), encode(command)?)
            .await?;
        Ok(())
    }

    pub async fn subscribe(&self, gateway: &str) -> RoomResult<BoxStream<'static, GatewayCommand>> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(gateway_channel(gateway)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move {
                let payload: String = msg.get_payload().ok()?;
                serde_json::from_str(&payload).ok()
            })
            .boxed())
    }
}
