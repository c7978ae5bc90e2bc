//! Connection quality across a link: each SFU tells the room's other SFUs the levels
//! of its own connected participants after every rating window, and tells its
//! gateways the levels the others send it, as its own ratings are told: a change at
//! once, a level below excellent again every [`TELL_AGAIN`] messages (for a gateway
//! that had nobody in the room when it was first told).

use tracing::debug;

use super::frame;
use crate::ParticipantId;
use crate::control::SfuEvent;
use crate::core::{Quality, Sfu};

/// Every so many `Quality` messages (one per rating window), the far side's levels
/// below excellent are told again.
const TELL_AGAIN: u32 = 5;

impl Sfu {
    /// Sends each linked room's rated local participants to its links.
    pub(in crate::core) fn relay_qualities(&mut self) {
        if self.links.is_empty() {
            return;
        }
        let linked: Vec<(crate::RoomId, Vec<u64>)> = self
            .rooms
            .iter()
            .filter(|(_, room)| !room.links.is_empty())
            .map(|(id, room)| (id.clone(), room.links.clone()))
            .collect();
        for (room, links) in linked {
            let rated: Vec<(String, Quality)> = self
                .peers
                .values()
                .filter(|peer| peer.room == room && peer.connected)
                .filter_map(|peer| Some((peer.participant.to_string(), peer.rating.reported()?)))
                .collect();
            if rated.is_empty() {
                continue;
            }
            for message in frame::encode_quality(&rated) {
                for link_id in &links {
                    self.send_on(*link_id, &message);
                }
            }
        }
    }

    /// The far side's levels: a change is told, and now and then what is below
    /// excellent again.
    pub(super) fn relayed_quality(&mut self, link_id: u64, rated: Vec<(String, Quality)>) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        link.quality_heard = link.quality_heard.wrapping_add(1);
        let again = link.quality_heard % TELL_AGAIN == 0;
        for (participant, quality) in rated {
            let before = link.qualities.insert(participant.clone(), quality);
            if before == Some(quality) && !(again && quality != Quality::Excellent) {
                continue;
            }
            debug!(room = %link.room, %participant, quality = quality.as_str(), "relayed connection quality");
            self.events.push_back(SfuEvent::ConnectionQuality {
                room: link.room.clone(),
                participant: ParticipantId::new(participant),
                quality,
            });
        }
    }
}
