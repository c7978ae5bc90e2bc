use crate::dialog::{bye, missing_header, response};
use crate::message::{Message, NameAddr, StartLine};

use super::message::INVITE;

#[test]
fn a_response_copies_the_transaction_headers_and_marks_where_the_request_came_from() {
    let invite = Message::parse(INVITE.as_bytes()).unwrap().unwrap();
    assert_eq!(missing_header(&invite), None);
    let source = "203.0.113.9:40123".parse().unwrap();
    let ok = response(
        &invite,
        source,
        200,
        "OK",
        "abc",
        &[("Contact", "<sip:confer@192.0.2.10>".into())],
        Some(("application/sdp", b"v=0\r\n".to_vec())),
    );
    let ok = Message::parse(&ok.to_bytes()).unwrap().unwrap();
    let vias: Vec<&str> = ok.headers_all("Via").collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(
        vias[0],
        "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;received=203.0.113.9;rport=40123"
    );
    assert_eq!(vias[1], "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKproxy");
    assert_eq!(ok.header("To"), Some("<sip:standup@192.0.2.10>;tag=abc"));
    assert_eq!(ok.header("CSeq"), Some("314159 INVITE"));
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert_eq!(ok.body, b"v=0\r\n");
    // 100 Trying carries no tag.
    let trying = response(&invite, source, 100, "Trying", "abc", &[], None);
    assert_eq!(trying.header("To"), Some("<sip:standup@192.0.2.10>"));
}

#[test]
fn the_bridges_bye_reverses_the_dialog_and_follows_the_route_set() {
    let invite = Message::parse(INVITE.as_bytes()).unwrap().unwrap();
    let request = bye(&invite, "abc", 1, "192.0.2.10:5060".parse().unwrap());
    let request = Message::parse(&request.to_bytes()).unwrap().unwrap();
    assert_eq!(
        request.start,
        StartLine::Request {
            method: "BYE".into(),
            uri: "sip:ada@198.51.100.7:5060".into()
        }
    );
    let from = NameAddr::parse(request.header("From").unwrap()).unwrap();
    assert_eq!(
        (from.uri, from.param("tag")),
        ("sip:standup@192.0.2.10", Some("abc"))
    );
    let to = NameAddr::parse(request.header("To").unwrap()).unwrap();
    assert_eq!(to.param("tag"), Some("1928301774"));
    assert_eq!(
        request.headers_all("Route").collect::<Vec<_>>(),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(request.cseq(), Some((1, "BYE")));
    assert!(
        request
            .header("Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK")
    );
}

#[test]
fn a_request_without_its_transaction_headers_is_caught() {
    let bare = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(missing_header(&bare), Some("From"));
    let bad_cseq = Message::parse(
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: x\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(missing_header(&bad_cseq), Some("CSeq"));
}
