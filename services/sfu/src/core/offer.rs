//! What the SFU reads from a client's SDP offer before handing it to the WebRTC stack:
//! how many receive slots (recvonly m-lines) of each kind it asks for, and whether it
//! sends any media at all.

/// Receive slots requested by an offer, in m-line order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RequestedSlots {
    pub(crate) audio: usize,
    pub(crate) video: usize,
}

/// Most slots of one kind a single peer may ask for.
pub(crate) const MAX_SLOTS_PER_KIND: usize = 32;

/// Counts recvonly audio and video m-lines.
pub(crate) fn requested_slots(sdp: &str) -> RequestedSlots {
    let mut slots = RequestedSlots::default();
    for section in sdp.split("\nm=").skip(1) {
        let recvonly = section.lines().any(|line| line.trim_end() == "a=recvonly");
        if !recvonly {
            continue;
        }
        if section.starts_with("audio ") {
            slots.audio += 1;
        } else if section.starts_with("video ") {
            slots.video += 1;
        }
    }
    slots.audio = slots.audio.min(MAX_SLOTS_PER_KIND);
    slots.video = slots.video.min(MAX_SLOTS_PER_KIND);
    slots
}

/// Whether some audio or video m-line of the offer sends: `sendrecv` (also when no
/// direction is given) or `sendonly`, and not rejected with port 0.
pub(crate) fn sends_media(sdp: &str) -> bool {
    sdp.split("\nm=").skip(1).any(|section| {
        let mut words = section.split_whitespace();
        let kind = words.next();
        let port = words.next();
        if !matches!(kind, Some("audio" | "video")) || port == Some("0") {
            return false;
        }
        let direction = section.lines().map(str::trim_end).find(|line| {
            matches!(
                *line,
                "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
            )
        });
        matches!(direction, None | Some("a=sendrecv" | "a=sendonly"))
    })
}

/// Mids of the m-lines marked `a=content:slides` (RFC 4796): a shared screen.
pub(crate) fn slides_mids(sdp: &str) -> Vec<String> {
    sdp.split("\nm=")
        .skip(1)
        .filter(|section| section.lines().any(|l| l.trim_end() == "a=content:slides"))
        .filter_map(|section| {
            section
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
                .map(str::to_owned)
        })
        .take(MAX_SLOTS_PER_KIND)
        .collect()
}

/// Rids of the simulcast encodings the offer sends, in the order of its first
/// `a=simulcast:send` list (Confer's web app lists them lowest first).
pub(crate) fn simulcast_send_rids(sdp: &str) -> Vec<String> {
    let Some(list) = sdp.lines().find_map(|line| {
        let value = line.trim_end().strip_prefix("a=simulcast:")?;
        let mut parts = value.split_whitespace();
        while let Some(direction) = parts.next() {
            let rids = parts.next()?;
            if direction == "send" {
                return Some(rids);
            }
        }
        None
    }) else {
        return Vec::new();
    };
    list.split(';')
        .filter_map(|alternatives| alternatives.split(',').next())
        .map(|rid| rid.trim_start_matches('~').to_owned())
        .filter(|rid| !rid.is_empty())
        .take(MAX_SLOTS_PER_KIND)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_slides_m_lines() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=content:slides\r\na=sendonly\r\n";
        assert_eq!(slides_mids(sdp), ["2"]);
        assert!(slides_mids("v=0\r\na=content:slides\r\n").is_empty());
    }

    #[test]
    fn reads_the_simulcast_send_order() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rid:q send\r\n\
            a=simulcast:send q;~h;f,x\r\n";
        assert_eq!(simulcast_send_rids(sdp), ["q", "h", "f"]);
        assert!(simulcast_send_rids("v=0\r\na=simulcast:recv q\r\n").is_empty());
        assert!(simulcast_send_rids("a=simulcast:send").is_empty());
    }

    #[test]
    fn counts_recvonly_sections_by_kind() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=recvonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=recvonly\r\n";
        assert_eq!(requested_slots(sdp), RequestedSlots { audio: 1, video: 2 });
    }

    #[test]
    fn tells_a_viewer_from_a_sender() {
        let viewer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert!(!sends_media(viewer));
        let rejected = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert!(!sends_media(rejected));
        let inactive = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n";
        assert!(!sends_media(inactive));
        for direction in ["a=sendonly\r\n", "a=sendrecv\r\n", ""] {
            let sender =
                format!("{viewer}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\n{direction}");
            assert!(sends_media(&sender), "{direction:?}");
        }
        assert!(!sends_media("a=sendonly\r\n"));
    }

    #[test]
    fn caps_the_number_of_slots() {
        let mut sdp = String::from("v=0\r\n");
        for _ in 0..100 {
            sdp.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n");
        }
        assert_eq!(requested_slots(&sdp).video, MAX_SLOTS_PER_KIND);
    }
}
