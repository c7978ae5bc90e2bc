//! The audio half of SIP's offer/answer (RFC 3264): what the caller offers, and the
//! answer that accepts Opus on plain RTP. Room audio is Opus end to end, so the bridge
//! never transcodes; an offer without Opus is refused (488).

use std::net::{IpAddr, SocketAddr};

/// What the caller's offer says about audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// Where the caller receives RTP.
    pub remote: SocketAddr,
    /// The payload type the caller uses for Opus.
    pub opus_pt: u8,
    /// The payload type of `telephone-event/8000` (DTMF), when offered.
    pub dtmf_pt: Option<u8>,
    pub direction: Direction,
    /// The caller multiplexes RTCP on the RTP port.
    pub rtcp_mux: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction of an answer to an offer with this one.
    fn answer(self) -> Self {
        match self {
            Self::SendRecv => Self::SendRecv,
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            Self::Inactive => Self::Inactive,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The caller sends audio towards the room.
    pub fn caller_sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// The caller wants audio from the room.
    pub fn caller_receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the body is not UTF-8 SDP")]
    NotSdp,
    #[error("the offer has no audio stream")]
    NoAudio,
    #[error(
        "the offer's audio is not plain RTP (RTP/AVP); SRTP and other profiles are not supported"
    )]
    UnsupportedProfile,
    #[error("the offer does not include Opus; room audio is Opus")]
    NoOpus,
    #[error("the offer has no usable connection address")]
    NoAddress,
}

impl AudioOffer {
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
        let mut session_addr: Option<IpAddr> = None;
        let mut session_direction = Direction::SendRecv;
        let mut audio: Option<MediaSection> = None;
        let mut current: Option<MediaSection> = None;
        for line in text.lines().map(str::trim_end) {
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    if let Some(done) = current.take()
                        && audio.is_none()
                        && done.is_audio
                    {
                        audio = Some(done);
                    }
                    current = Some(MediaSection::start(value)?);
                }
                "c" => {
                    let addr = parse_connection(value);
                    match current.as_mut() {
                        Some(section) => section.addr = addr,
                        None => session_addr = addr,
                    }
                }
                "a" => match current.as_mut() {
                    Some(section) => section.attribute(value),
                    None => {
                        if let Some(direction) = parse_direction(value) {
                            session_direction = direction;
                        }
                    }
                },
                _ => {}
            }
        }
        if let Some(done) = current.take()
            && audio.is_none()
            && done.is_audio
        {
            audio = Some(done);
        }
        let audio = audio.ok_or(SdpError::NoAudio)?;
        if audio.port == 0 {
            return Err(SdpError::NoAudio);
        }
        if audio.profile != "RTP/AVP" && audio.profile != "RTP/AVPF" {
            return Err(SdpError::UnsupportedProfile);
        }
        let opus_pt = audio
            .rtpmaps
            .iter()
            .find(|(pt, codec)| {
                audio.formats.contains(pt) && codec.to_ascii_lowercase().starts_with("opus/48000")
            })
            .map(|(pt, _)| *pt)
            .ok_or(SdpError::NoOpus)?;
        let dtmf_pt = audio
            .rtpmaps
            .iter()
            .find(|(pt, codec)| {
                audio.formats.contains(pt) && codec.eq_ignore_ascii_case("telephone-event/8000")
            })
            .map(|(pt, _)| *pt);
        let ip = audio.addr.or(session_addr).ok_or(SdpError::NoAddress)?;
        Ok(Self {
            remote: SocketAddr::new(ip, audio.port),
            opus_pt,
            dtmf_pt,
            direction: audio.direction.unwrap_or(session_direction),
            rtcp_mux: audio.rtcp_mux,
        })
    }

    /// The answer: Opus (and DTMF events when offered) at `local`, in the caller's
    /// payload types. `session` identifies the SDP session; `version` moves with every
    /// change (RFC 4566 `o=`).
    pub fn answer(&self, local: SocketAddr, session: u64, version: u64) -> String {
        let ip = local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut formats = self.opus_pt.to_string();
        if let Some(dtmf) = self.dtmf_pt {
            formats.push_str(&format!(" {dtmf}"));
        }
        let mut sdp = format!(
            "v=0\r\no=confer {session} {version} IN {family} {ip}\r\ns=Confer\r\n\
             c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n\
             a=rtpmap:{opus} opus/48000/2\r\na=fmtp:{opus} minptime=10;useinbandfec=1\r\n",
            port = local.port(),
            opus = self.opus_pt,
        );
        if let Some(dtmf) = self.dtmf_pt {
            sdp.push_str(&format!(
                "a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-16\r\n"
            ));
        }
        sdp.push_str("a=ptime:20\r\n");
        if self.rtcp_mux {
            sdp.push_str("a=rtcp-mux\r\n");
        }
        sdp.push_str(&format!("a={}\r\n", self.direction.answer().attribute()));
        sdp
    }
}

/// The bridge's side of a call's SDP: where it receives the caller's RTP, the SDP
/// session it answers in, and the offer it answers; re-INVITEs move the version on.
#[derive(Debug, Clone)]
pub struct LocalAnswer {
    pub rtp: SocketAddr,
    pub session: u64,
    pub version: u64,
    pub offer: AudioOffer,
}

impl LocalAnswer {
    pub fn new(rtp: SocketAddr, offer: AudioOffer) -> Self {
        let session = u64::from(rand::random::<u32>());
        Self {
            rtp,
            session,
            version: session,
            offer,
        }
    }

    pub fn sdp(&self) -> String {
        self.offer.answer(self.rtp, self.session, self.version)
    }

    /// The answer to a new offer in the same session (a re-INVITE).
    pub fn renegotiate(&mut self, offer: AudioOffer) {
        self.offer = offer;
        self.version += 1;
    }
}

/// One `m=` section while it is read.
struct MediaSection {
    is_audio: bool,
    port: u16,
    profile: String,
    formats: Vec<u8>,
    addr: Option<IpAddr>,
    rtpmaps: Vec<(u8, String)>,
    direction: Option<Direction>,
    rtcp_mux: bool,
}

impl MediaSection {
    fn start(value: &str) -> Result<Self, SdpError> {
        let mut parts = value.split_whitespace();
        let media = parts.next().ok_or(SdpError::NotSdp)?;
        let port = parts
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .ok_or(SdpError::NotSdp)?;
        let profile = parts.next().ok_or(SdpError::NotSdp)?.to_owned();
        Ok(Self {
            is_audio: media == "audio",
            port,
            profile,
            formats: parts.filter_map(|f| f.parse().ok()).collect(),
            addr: None,
            rtpmaps: Vec::new(),
            direction: None,
            rtcp_mux: false,
        })
    }

    fn attribute(&mut self, value: &str) {
        if let Some(map) = value.strip_prefix("rtpmap:") {
            if let Some((pt, codec)) = map.split_once(' ')
                && let Ok(pt) = pt.parse()
            {
                self.rtpmaps.push((pt, codec.trim().to_owned()));
            }
        } else if value == "rtcp-mux" {
            self.rtcp_mux = true;
        } else if let Some(direction) = parse_direction(value) {
            self.direction = Some(direction);
        }
    }
}

fn parse_direction(value: &str) -> Option<Direction> {
    Some(match value {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

/// `IN IP4 192.0.2.1` → the address (an unspecified address means "on hold": none).
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    let (_, _, addr) = (parts.next()?, parts.next()?, parts.next()?);
    let ip: IpAddr = addr.split('/').next()?.parse().ok()?;
    (!ip.is_unspecified()).then_some(ip)
}
