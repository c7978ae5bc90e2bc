use proptest::prelude::*;

use crate::message::{Message, NameAddr, ParseError, StartLine, uri_host_port, uri_user};

pub(crate) const INVITE: &str = "INVITE sip:standup@192.0.2.10 SIP/2.0\r\n\
v: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKproxy\r\n\
Max-Forwards: 70\r\n\
f: \"Ada Lovelace\" <sip:+15550100@198.51.100.7>;tag=1928301774\r\n\
To: <sip:standup@192.0.2.10>\r\n\
i: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:ada@198.51.100.7:5060>\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Subject: a long\r\n  folded subject\r\n\
Content-Type: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\nextra bytes past Content-Length";

#[test]
fn a_request_parses_with_compact_names_expanded_and_folded_lines_joined() {
    let message = Message::parse(INVITE.as_bytes()).unwrap().unwrap();
    assert_eq!(
        message.start,
        StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:standup@192.0.2.10".into()
        }
    );
    assert_eq!(message.header("call-id"), Some("a84b4c76e66710@pc33"));
    assert_eq!(message.header("Subject"), Some("a long folded subject"));
    assert_eq!(message.headers_all("Via").count(), 2);
    assert_eq!(message.headers_all("Record-Route").count(), 2);
    assert_eq!(message.cseq(), Some((314159, "INVITE")));
    assert_eq!(message.body, b"v=0\r");
    let from = NameAddr::parse(message.header("From").unwrap()).unwrap();
    assert_eq!(from.display, Some("Ada Lovelace"));
    assert_eq!(from.uri, "sip:+15550100@198.51.100.7");
    assert_eq!(from.param("tag"), Some("1928301774"));
}

#[test]
fn a_response_parses_and_a_message_survives_writing_and_reading() {
    let message = Message::parse(b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        message.start,
        StartLine::Response {
            status: 180,
            reason: "Ringing".into()
        }
    );
    let again = Message::parse(&message.to_bytes()).unwrap().unwrap();
    assert_eq!(again.start, message.start);
    assert_eq!(again.header("Call-ID"), Some("x"));
    assert_eq!(again.header("Content-Length"), Some("0"));
}

#[test]
fn keep_alives_are_not_messages_and_malformed_datagrams_say_why() {
    assert_eq!(Message::parse(b"\r\n\r\n"), Ok(None));
    assert_eq!(
        Message::parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"),
        Err(ParseError::Unterminated)
    );
    assert_eq!(
        Message::parse(b"HELLO\r\n\r\n"),
        Err(ParseError::BadStartLine)
    );
    assert_eq!(
        Message::parse(b"INVITE sip:a@b SIP/3.0\r\n\r\n"),
        Err(ParseError::BadStartLine)
    );
    assert_eq!(
        Message::parse(b"SIP/2.0 99 Low\r\n\r\n"),
        Err(ParseError::BadStartLine)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nno colon\r\n\r\n"),
        Err(ParseError::BadHeader)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n"),
        Err(ParseError::BadHeader)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort"),
        Err(ParseError::BadContentLength)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n"),
        Err(ParseError::BadContentLength)
    );
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n"),
        Err(ParseError::NotUtf8)
    );
    assert_eq!(
        Message::parse(&vec![b'a'; 20_000]),
        Err(ParseError::TooLarge)
    );
    let many = format!("OPTIONS sip:a@b SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(200));
    assert_eq!(
        Message::parse(many.as_bytes()),
        Err(ParseError::TooManyHeaders)
    );
}

#[test]
fn uris_give_their_user_and_host() {
    assert_eq!(
        uri_user("sip:standup@example.com").as_deref(),
        Some("standup")
    );
    assert_eq!(
        uri_user("sip:standup*1234@example.com;transport=udp").as_deref(),
        Some("standup*1234")
    );
    assert_eq!(
        uri_user("sips:team%2Dsync@example.com").as_deref(),
        Some("team-sync")
    );
    assert_eq!(
        uri_user("tel:+15550100;phone-context=x").as_deref(),
        Some("+15550100")
    );
    assert_eq!(uri_user("sip:example.com"), None);
    assert_eq!(uri_user("mailto:a@b"), None);
    assert_eq!(uri_user("sip:bad%zz@example.com"), None);
    assert_eq!(
        uri_host_port("sip:a@192.0.2.1:5070;lr"),
        Some(("192.0.2.1".into(), 5070))
    );
    assert_eq!(
        uri_host_port("sip:p1.example.com;lr"),
        Some(("p1.example.com".into(), 5060))
    );
    assert_eq!(
        uri_host_port("sip:a@[2001:db8::1]:5080"),
        Some(("2001:db8::1".into(), 5080))
    );
}

proptest! {
    /// Whatever arrives on the SIP port, parsing answers (a message or an error) and
    /// never panics.
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Message::parse(&bytes);
    }

    /// A real request cut anywhere, or with one byte changed, still gets an answer.
    #[test]
    fn truncated_and_mutated_requests_never_panic(cut in 0usize..INVITE.len(), at in 0usize..INVITE.len(), byte in any::<u8>()) {
        let _ = Message::parse(&INVITE.as_bytes()[..cut]);
        let mut mutated = INVITE.as_bytes().to_vec();
        mutated[at] = byte;
        if let Ok(Some(message)) = Message::parse(&mutated) {
            // What parses can be written and read back.
            let _ = Message::parse(&message.to_bytes());
            let _ = message.cseq();
            for (_, value) in &message.headers {
                let _ = NameAddr::parse(value).map(|n| (n.param("tag"), uri_user(n.uri)));
            }
        }
    }
}
