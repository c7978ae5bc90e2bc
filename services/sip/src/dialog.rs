//! Building what the bridge sends as a SIP user agent server: responses to a request
//! (RFC 3261 §8.2.6) and the BYE that ends a call from the room's side (§15).

use std::net::SocketAddr;

use crate::message::{Message, NameAddr, StartLine, param};

/// What every message the bridge writes says about itself.
pub const SERVER: &str = "Confer";
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";

/// The headers a request must have before anything can answer it.
pub fn missing_header(request: &Message) -> Option<&'static str> {
    ["Via", "From", "To", "Call-ID", "CSeq"]
        .into_iter()
        .find(|name| request.header(name).is_none())
        .or_else(|| request.cseq().is_none().then_some("CSeq"))
}

/// A response to `request` from `source`: its Vias (the top one marked with where it
/// really came from, RFC 3581), From, To (with `to_tag` unless it has one, or the
/// status is 100), Call-ID and CSeq, then `extra` headers and `body`.
pub fn response(
    request: &Message,
    source: SocketAddr,
    status: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, String)],
    body: Option<(&str, Vec<u8>)>,
) -> Message {
    let mut headers = Vec::new();
    for (i, via) in request.headers_all("Via").enumerate() {
        let via = if i == 0 {
            mark_received(via, source)
        } else {
            via.to_owned()
        };
        headers.push(("Via".to_owned(), via));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let Some(value) = request.header(name) else {
            continue;
        };
        let value = if name == "To" && status > 100 && !has_tag(value) {
            format!("{value};tag={to_tag}")
        } else {
            value.to_owned()
        };
        headers.push((name.to_owned(), value));
    }
    headers.push(("Server".to_owned(), SERVER.to_owned()));
    for (name, value) in extra {
        headers.push(((*name).to_owned(), value.clone()));
    }
    let body = match body {
        Some((content_type, bytes)) => {
            headers.push(("Content-Type".to_owned(), content_type.to_owned()));
            bytes
        }
        None => Vec::new(),
    };
    Message {
        start: StartLine::Response {
            status,
            reason: reason.to_owned(),
        },
        headers,
        body,
    }
}

/// The BYE that ends the dialog `invite` created, sent by the bridge (the callee):
/// From is the INVITE's To with our tag, To is its From, the route set is its
/// Record-Route in order, the target its Contact.
pub fn bye(invite: &Message, local_tag: &str, cseq: u32, local: SocketAddr) -> Message {
    let target = invite
        .header("Contact")
        .and_then(NameAddr::parse)
        .map(|c| c.uri.to_owned())
        .or_else(|| {
            invite
                .header("From")
                .and_then(NameAddr::parse)
                .map(|f| f.uri.to_owned())
        })
        .unwrap_or_else(|| "sip:caller@invalid".to_owned());
    let to = invite.header("To").unwrap_or_default();
    let from = if has_tag(to) {
        to.to_owned()
    } else {
        format!("{to};tag={local_tag}")
    };
    let mut headers = vec![
        (
            "Via".to_owned(),
            format!("SIP/2.0/UDP {local};branch={};rport", branch()),
        ),
        ("Max-Forwards".to_owned(), "70".to_owned()),
    ];
    for route in invite.headers_all("Record-Route") {
        headers.push(("Route".to_owned(), route.to_owned()));
    }
    headers.extend([
        ("From".to_owned(), from),
        (
            "To".to_owned(),
            invite.header("From").unwrap_or_default().to_owned(),
        ),
        (
            "Call-ID".to_owned(),
            invite.header("Call-ID").unwrap_or_default().to_owned(),
        ),
        ("CSeq".to_owned(), format!("{cseq} BYE")),
        ("User-Agent".to_owned(), SERVER.to_owned()),
    ]);
    Message {
        start: StartLine::Request {
            method: "BYE".to_owned(),
            uri: target,
        },
        headers,
        body: Vec::new(),
    }
}

/// A fresh RFC 3261 branch (magic cookie first).
pub fn branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

/// A fresh dialog tag.
pub fn tag() -> String {
    format!("{:012x}", rand::random::<u64>() >> 16)
}

fn has_tag(name_addr: &str) -> bool {
    NameAddr::parse(name_addr).is_some_and(|n| n.param("tag").is_some())
}

/// The top Via with `received` and `rport` filled in when the sender asked (`rport`)
/// or sent from another address than it claims.
fn mark_received(via: &str, source: SocketAddr) -> String {
    let (sent_by, params) = via.split_at(via.find(';').unwrap_or(via.len()));
    let wants_rport = param(params, "rport").is_some();
    let kept: Vec<&str> = params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or(p);
            let rport = key.eq_ignore_ascii_case("rport") && wants_rport;
            !rport && !key.eq_ignore_ascii_case("received")
        })
        .collect();
    let mut out = sent_by.trim_end().to_owned();
    for p in kept {
        out.push(';');
        out.push_str(p);
    }
    let claimed_host = sent_by.split_whitespace().nth(1).map(|h| {
        h.rsplit_once(':')
            .map_or(h, |(host, _)| host)
            .trim_matches(['[', ']'])
    });
    if wants_rport || claimed_host != Some(&source.ip().to_string()) {
        out.push_str(&format!(";received={}", source.ip()));
    }
    if wants_rport {
        out.push_str(&format!(";rport={}", source.port()));
    }
    out
}
