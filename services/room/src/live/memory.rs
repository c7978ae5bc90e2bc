//! Live state in process memory, for `confer dev` and tests.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::api::{GatewayCommand, Watched};
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, Placement};

#[derive(Default)]
struct Inner {
    placements: HashMap<(String, String), Placement>,
    rooms: HashMap<String, Vec<ParticipantInfo>>,
    room_of: HashMap<String, String>,
    active: HashSet<String>,
    /// Each gateway's commands, numbered from 1 in the order made.
    buses: HashMap<String, GatewayBus>,
    /// When each gateway's lease runs out.
    leases: HashMap<String, Instant>,
    /// Departed participants kept to come back: id → (room, participant, until).
    departed: HashMap<String, (String, ParticipantInfo, Instant)>,
    /// Identities whose joins to a room are held: (room, identity) → (token, until).
    identity_holds: HashMap<(String, String), (String, Instant)>,
    /// (room key, identity) → the message that took the slow-mode turn, and until when.
    slow_mode_turns: HashMap<(String, String), (String, Instant)>,
}

/// One gateway's command bus.
struct GatewayBus {
    sender: broadcast::Sender<(u64, GatewayCommand)>,
    made: u64,
}

impl GatewayBus {
    fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            made: 0,
        }
    }
}

/// Slow-mode turns kept before those that ran out are dropped.
const SLOW_MODE_TURNS_KEPT: usize = 4096;

/// Boxed: the state is large beside [`super::RedisLive`]'s handles.
#[derive(Default)]
pub struct MemoryLive(Box<Mutex<Inner>>);

impl MemoryLive {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn place(&self, room_key: &str, candidate: Placement) -> RoomResult<Placement> {
        let mut inner = self.lock();
        let key = (room_key.to_owned(), candidate.region.clone());
        Ok(inner.placements.entry(key).or_insert(candidate).clone())
    }

    pub async fn placement(&self, room_key: &str, region: &str) -> RoomResult<Option<Placement>> {
        let key = (room_key.to_owned(), region.to_owned());
        Ok(self.lock().placements.get(&key).cloned())
    }

    pub async fn clear_placement(&self, room_key: &str, region: &str) -> RoomResult<()> {
        let key = (room_key.to_owned(), region.to_owned());
        self.lock().placements.remove(&key);
        Ok(())
    }

    pub async fn rooms_placed_on(&self, sfu: &str) -> RoomResult<Vec<(String, String)>> {
        Ok(self
            .lock()
            .placements
            .iter()
            .filter(|(_, placement)| placement.sfu == sfu)
            .map(|(key, _)| key.clone())
            .collect())
    }

    pub async fn rooms_on(&self, sfus: &[String]) -> RoomResult<Vec<u64>> {
        let inner = self.lock();
        Ok(sfus
            .iter()
            .map(|sfu| inner.placements.values().filter(|p| &p.sfu == sfu).count() as u64)
            .collect())
    }

    pub async fn put_participant(&self, room_key: &str, info: &ParticipantInfo) -> RoomResult<()> {
        let mut inner = self.lock();
        inner.room_of.insert(info.id.clone(), room_key.to_owned());
        let members = inner.rooms.entry(room_key.to_owned()).or_default();
        match members.iter_mut().find(|p| p.id == info.id) {
            Some(existing) => *existing = info.clone(),
            None => members.push(info.clone()),
        }
        Ok(())
    }

    pub async fn keep_departed(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
        ttl: Duration,
    ) -> RoomResult<()> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.departed.retain(|_, (_, _, until)| *until > now);
        inner.departed.insert(
            participant.id.clone(),
            (room_key.to_owned(), participant.clone(), now + ttl),
        );
        Ok(())
    }

    pub async fn take_departed(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        let kept = self.lock().departed.remove(id);
        Ok(kept
            .filter(|(_, _, until)| *until > Instant::now())
            .map(|(room, participant, _)| (room, participant)))
    }

    /// `each` of the participants kept for `room_key` at `now`, with when their time
    /// runs out.
    fn kept<T>(
        &self,
        room_key: &str,
        now: Instant,
        each: impl Fn(&ParticipantInfo, Instant) -> T,
    ) -> Vec<T> {
        self.lock()
            .departed
            .values()
            .filter(|(room, _, until)| room == room_key && *until > now)
            .map(|(_, participant, until)| each(participant, *until))
            .collect()
    }

    pub async fn departed_in(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        Ok(self.kept(room_key, Instant::now(), |participant, _| {
            participant.clone()
        }))
    }

    pub async fn kept_for(&self, room_key: &str) -> RoomResult<Option<Duration>> {
        let now = Instant::now();
        Ok(self
            .kept(room_key, now, |_, until| until - now)
            .into_iter()
            .max())
    }

    pub async fn participant(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        let inner = self.lock();
        let Some(room) = inner.room_of.get(id) else {
            return Ok(None);
        };
        let info = inner
            .rooms
            .get(room)
            .and_then(|members| members.iter().find(|p| p.id == id));
        Ok(info.map(|info| (room.clone(), info.clone())))
    }

    pub async fn participants(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        Ok(self.lock().rooms.get(room_key).cloned().unwrap_or_default())
    }

    /// Participants are found by scanning every room: one process holds few.
    pub async fn participants_of(&self, gateway: &str) -> RoomResult<Vec<String>> {
        Ok(self
            .lock()
            .rooms
            .values()
            .flatten()
            .filter(|p| p.gateway == gateway)
            .map(|p| p.id.clone())
            .collect())
    }

    pub async fn hold_identity(
        &self,
        room_key: &str,
        identity: &str,
        ttl: Duration,
    ) -> RoomResult<Option<String>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let key = (room_key.to_owned(), identity.to_owned());
        if inner
            .identity_holds
            .get(&key)
            .is_some_and(|(_, until)| *until > now)
        {
            return Ok(None);
        }
        let token = format!("{:016x}", rand::random::<u64>());
        inner.identity_holds.insert(key, (token.clone(), now + ttl));
        Ok(Some(token))
    }

    pub async fn take_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
        wait: Duration,
    ) -> RoomResult<Duration> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.slow_mode_turns.len() >= SLOW_MODE_TURNS_KEPT {
            inner.slow_mode_turns.retain(|_, (_, until)| *until > now);
        }
        let key = (room_key.to_owned(), identity.to_owned());
        match inner.slow_mode_turns.get(&key) {
            Some((taken_by, until)) if *until > now && taken_by != message => Ok(*until - now),
            Some((_, until)) if *until > now => Ok(Duration::ZERO),
            _ => {
                inner
                    .slow_mode_turns
                    .insert(key, (message.to_owned(), now + wait));
                Ok(Duration::ZERO)
            }
        }
    }

    pub async fn give_back_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
    ) -> RoomResult<()> {
        let mut inner = self.lock();
        let key = (room_key.to_owned(), identity.to_owned());
        if inner
            .slow_mode_turns
            .get(&key)
            .is_some_and(|(taken_by, _)| taken_by == message)
        {
            inner.slow_mode_turns.remove(&key);
        }
        Ok(())
    }

    pub async fn release_identity(
        &self,
        room_key: &str,
        identity: &str,
        token: &str,
    ) -> RoomResult<()> {
        let mut inner = self.lock();
        let key = (room_key.to_owned(), identity.to_owned());
        if inner
            .identity_holds
            .get(&key)
            .is_some_and(|(held, _)| held == token)
        {
            inner.identity_holds.remove(&key);
        }
        Ok(())
    }

    pub async fn renew_lease(&self, gateway: &str, ttl: Duration) -> RoomResult<()> {
        let until = Instant::now() + ttl;
        self.lock().leases.insert(gateway.to_owned(), until);
        Ok(())
    }

    pub async fn unleased_gateways(&self) -> RoomResult<Vec<String>> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.leases.retain(|_, until| *until > now);
        let holding: HashSet<&String> =
            inner.rooms.values().flatten().map(|p| &p.gateway).collect();
        Ok(holding
            .into_iter()
            .filter(|gateway| !inner.leases.contains_key(*gateway))
            .cloned()
            .collect())
    }

    /// Nothing to forget: the gateways are found from the participants.
    pub async fn forget_gateway(&self, _gateway: &str) -> RoomResult<()> {
        Ok(())
    }

    pub async fn remove_participant(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
    ) -> RoomResult<bool> {
        let id = &participant.id;
        let mut inner = self.lock();
        inner.room_of.remove(id);
        let Some(members) = inner.rooms.get_mut(room_key) else {
            return Ok(false);
        };
        let before = members.len();
        members.retain(|p| &p.id != id);
        let removed = members.len() != before;
        if members.is_empty() {
            inner.rooms.remove(room_key);
        }
        Ok(removed)
    }

    pub async fn activate(&self, room_key: &str) -> RoomResult<bool> {
        Ok(self.lock().active.insert(room_key.to_owned()))
    }

    pub async fn deactivate(&self, room_key: &str) -> RoomResult<bool> {
        Ok(self.lock().active.remove(room_key))
    }

    pub async fn is_active(&self, room_key: &str) -> RoomResult<bool> {
        Ok(self.lock().active.contains(room_key))
    }

    pub async fn publish(&self, gateway: &str, command: &GatewayCommand) -> RoomResult<()> {
        if let Some(bus) = self.lock().buses.get_mut(gateway) {
            bus.made += 1;
            let _ = bus.sender.send((bus.made, command.clone()));
        }
        Ok(())
    }

    /// `gateway`'s commands from now: in one process the stream never breaks, so
    /// there is nothing to take up again after a cursor.
    pub async fn subscribe(
        &self,
        gateway: &str,
        _after: Option<String>,
    ) -> RoomResult<BoxStream<'static, Watched>> {
        let (start, receiver) = {
            let mut inner = self.lock();
            let bus = inner
                .buses
                .entry(gateway.to_owned())
                .or_insert_with(GatewayBus::new);
            (bus.made, bus.sender.subscribe())
        };
        let first = Watched {
            cursor: start.to_string(),
            command: None,
        };
        let commands = BroadcastStream::new(receiver).filter_map(|item| async move {
            let (made, command) = item.ok()?;
            Some(Watched {
                cursor: made.to_string(),
                command: Some(command),
            })
        });
        Ok(futures_util::stream::once(async { first })
            .chain(commands)
            .boxed())
    }
}
