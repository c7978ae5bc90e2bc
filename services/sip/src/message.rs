//! SIP messages (RFC 3261) as they arrive in one UDP datagram: parsed into a start
//! line, headers in order and a body, with a specific error for each way a datagram
//! is not a SIP message. Compact header names are expanded, so lookups use full names.

use std::fmt;

/// Datagrams larger than this are refused (SIP over UDP stays well below it).
pub const MAX_DATAGRAM: usize = 16 * 1024;
/// More headers than this is not a SIP message we take.
const MAX_HEADERS: usize = 128;

/// A parsed request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// Header names in canonical form (`Via`, `Call-ID`, ...), values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

/// Why a datagram is not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the datagram is larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
    #[error("the message head is not UTF-8")]
    NotUtf8,
    #[error("the message has no blank line after its headers")]
    Unterminated,
    #[error("the start line is not a SIP request or status line")]
    BadStartLine,
    #[error("a header line has no name or no colon")]
    BadHeader,
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("Content-Length is not a number or exceeds the body")]
    BadContentLength,
}

impl Message {
    /// Parses one datagram. Keep-alives (a bare CRLF) are `Ok(None)`.
    pub fn parse(datagram: &[u8]) -> Result<Option<Self>, ParseError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(ParseError::TooLarge);
        }
        if datagram.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Ok(None);
        }
        let head_end = find(datagram, b"\r\n\r\n")
            .map(|at| (at, at + 4))
            .or_else(|| find(datagram, b"\n\n").map(|at| (at, at + 2)))
            .ok_or(ParseError::Unterminated)?;
        let head = std::str::from_utf8(&datagram[..head_end.0]).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = unfold(head).into_iter();
        let start = parse_start(&lines.next().ok_or(ParseError::BadStartLine)?)?;
        let mut headers = Vec::new();
        for line in lines {
            if headers.len() == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            let (name, value) = line.split_once(':').ok_or(ParseError::BadHeader)?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::BadHeader);
            }
            headers.push((canonical_name(name), value.trim().to_owned()));
        }
        let rest = &datagram[head_end.1..];
        let body = match header_in(&headers, "Content-Length") {
            Some(len) => {
                let len: usize = len.parse().map_err(|_| ParseError::BadContentLength)?;
                rest.get(..len)
                    .ok_or(ParseError::BadContentLength)?
                    .to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(Some(Self {
            start,
            headers,
            body,
        }))
    }

    /// The first value of header `name` (canonical form).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// Every value of header `name`, in order, comma-separated values split.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_commas(v))
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// `(number, method)` of the CSeq header.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (number, method) = self.header("CSeq")?.split_once(char::is_whitespace)?;
        Some((number.trim().parse().ok()?, method.trim()))
    }

    /// The bytes of this message as it goes on the wire (Content-Length recomputed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.to_string().into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The head: start line, headers (without any Content-Length of the parsed message)
/// and a fresh Content-Length, then the blank line.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.start {
            StartLine::Request { method, uri } => write!(f, "{method} {uri} SIP/2.0\r\n")?,
            StartLine::Response { status, reason } => write!(f, "SIP/2.0 {status} {reason}\r\n")?,
        }
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("Content-Length") {
                write!(f, "{name}: {value}\r\n")?;
            }
        }
        write!(f, "Content-Length: {}\r\n\r\n", self.body.len())
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Splits a header value at commas outside quotes and angle brackets.
pub fn split_commas(value: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Lines of the head with continuation lines (leading space or tab) joined.
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let continues = line.starts_with([' ', '\t']);
        match lines.last_mut() {
            Some(last) if continues => {
                last.push(' ');
                last.push_str(line.trim());
            }
            None if line.is_empty() => {}
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
        if !(100..700).contains(&status) {
            return Err(ParseError::BadStartLine);
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(uri), Some("SIP/2.0"), None)
            if !method.is_empty() && method.bytes().all(is_token_byte) && !uri.is_empty() =>
        {
            Ok(StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            })
        }
        _ => Err(ParseError::BadStartLine),
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Full, conventionally cased header names for the compact forms and common headers.
fn canonical_name(name: &str) -> String {
    let full = match name.to_ascii_lowercase().as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "k" | "supported" => "Supported",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        "record-route" => "Record-Route",
        "route" => "Route",
        _ => return name.to_owned(),
    };
    full.to_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `name-addr` / `addr-spec` with parameters, as in From, To and Contact: the display
/// name, the URI and the header parameters (`tag=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    pub uri: &'a str,
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub fn parse(value: &'a str) -> Option<Self> {
        let value = value.trim();
        if let Some(open) = value.find('<') {
            let close = open + value[open..].find('>')?;
            let display = value[..open].trim().trim_matches('"').trim();
            Some(Self {
                display: (!display.is_empty()).then_some(display),
                uri: &value[open + 1..close],
                params: &value[close + 1..],
            })
        } else {
            let (uri, params) = value.split_at(value.find(';').unwrap_or(value.len()));
            Some(Self {
                display: None,
                uri,
                params,
            })
        }
    }

    /// The header parameter `name` (`tag`), if present.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }
}

/// The value of `;name=value` in a parameter list (empty for a bare `;name`).
pub fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').map(str::trim).find_map(|p| {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The user part of a `sip:`/`sips:`/`tel:` URI (`room` in `sip:room@host;transport=udp`),
/// percent-decoded.
pub fn uri_user(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.split_once('@') {
        Some((user, _)) => user,
        None if uri.starts_with("tel:") => rest.split(';').next().unwrap_or(rest),
        None => return None,
    };
    let user = user.split(';').next().unwrap_or(user);
    let user = user.split(':').next().unwrap_or(user);
    percent_decode(user)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `host:port` of a SIP URI (`sip:user@host:port;params`), port 5060 when absent.
pub fn uri_host_port(uri: &str) -> Option<(String, u16)> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_part = host_part.split([';', '?']).next()?;
    if let Some(v6) = host_part.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(5060), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match host_part.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_part.to_owned(), 5060)),
    }
}
