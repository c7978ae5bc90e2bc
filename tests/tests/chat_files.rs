//! Files shared in chat: a member asks to share, uploads the bytes over HTTP to the
//! signed URL, and every member gets a `file` entry with a download link signed for
//! them. The size limit, the declared content type (checked against the bytes), and the
//! links (forged, another's use, tampered) are enforced with clear errors.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use confer_e2e::server::{Options, TestServer};
use confer_e2e::signal::SignalClient;
use confer_gateway::{FileConfig, GatewayConfig};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR tiny picture";

async fn join(server: &TestServer, name: &str) -> anyhow::Result<SignalClient> {
    join_room(server, "files", name).await
}

async fn join_room(server: &TestServer, room: &str, name: &str) -> anyhow::Result<SignalClient> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": room, "name": name}}))
        .await?;
    client.recv_kind("joined", WAIT).await?;
    Ok(client)
}

async fn ask(
    client: &mut SignalClient,
    name: &str,
    content_type: &str,
    size: usize,
) -> anyhow::Result<Value> {
    client
        .send(&json!({"request_id": "f", "file_upload": {"name": name, "content_type": content_type, "size": size}}))
        .await?;
    loop {
        let reply = client.recv(WAIT).await?;
        if reply["request_id"] == "f" {
            return Ok(reply);
        }
    }
}

async fn put(server: &TestServer, url: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
    let response = confer_http::client()?
        .put(server.url(url))
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_files_and_only_members_can_read_them() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("confer-files-test-{:08x}", rand_u32()));
    let server = TestServer::start_with(Options {
        gateway: GatewayConfig {
            files: FileConfig {
                dir: dir.clone(),
                max_bytes: 1024,
                key: b"a test key of thirty-two bytes!!".to_vec(),
                ..FileConfig::default()
            },
            ..GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let mut ada = join(&server, "Ada").await?;
    let mut bob = join(&server, "Bob").await?;

    let reply = ask(&mut ada, "tiny.png", "image/png", PNG.len()).await?;
    let upload = reply["file_upload"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(upload.starts_with("/files/upload/"), "{reply}");
    let (status, body) = put(&server, &upload, PNG).await?;
    assert_eq!((status, body["seq"].as_u64()), (201, Some(1)), "{body}");

    let entry = bob.recv_kind("chat", WAIT).await?["chat"].clone();
    assert_eq!(
        (entry["kind"].as_str(), entry["text"].as_str()),
        (Some("file"), Some("tiny.png"))
    );
    assert_eq!(
        (entry["file_type"].as_str(), entry["file_size"].as_u64()),
        (Some("image/png"), Some(PNG.len() as u64))
    );
    let link = entry["download_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let response = confer_http::client()?.get(server.url(&link)).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(
        response.headers()["content-disposition"]
            .to_str()?
            .contains("tiny.png")
    );
    assert_eq!(response.bytes().await?.as_ref(), PNG);
    // A late joiner's history carries a link of its own.
    let mut carol = SignalClient::connect(&server.signal_url()).await?;
    carol
        .send(&json!({"request_id": "j", "join": {"room": "files", "name": "Carol"}}))
        .await?;
    let joined = carol.recv_kind("joined", WAIT).await?;
    let carols = joined["joined"]["chat_history"][0]["download_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(carols.starts_with("/files/download/") && carols != link);

    // Links are not keys to anything else: an upload link does not download, a
    // tampered link is refused, and a non-member has no way to get one.
    let wrong_use = confer_http::client()?
        .get(server.url(&upload.replace("/upload/", "/download/")))
        .send()
        .await?;
    assert_eq!(wrong_use.status().as_u16(), 403);
    let mut tampered = link.clone();
    tampered.insert(link.len() - 3, 'x');
    let refused = confer_http::client()?
        .get(server.url(&tampered))
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(
        refused.json::<Value>().await?["error"]["code"],
        "invalid_link"
    );
    let mut outsider = SignalClient::connect(&server.signal_url()).await?;
    let reply = ask(&mut outsider, "x.png", "image/png", 10).await?;
    assert_eq!(reply["error"]["code"], "not_joined");

    // Bad files: over the limit, a type that may not be shared, a forged type, a body
    // other than declared, a bad name.
    for (name, content_type, size, code) in [
        ("big.png", "image/png", 1025, "file_too_large"),
        (
            "tool.exe",
            "application/x-msdownload",
            10,
            "unsupported_file_type",
        ),
        ("../etc/passwd", "text/plain", 10, "invalid_file_name"),
    ] {
        let reply = ask(&mut ada, name, content_type, size).await?;
        assert_eq!(reply["error"]["code"], code, "{name}: {reply}");
    }
    let reply = ask(&mut ada, "fake.png", "image/png", 9).await?;
    let url = reply["file_upload"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, body) = put(&server, &url, b"%PDF-1.7\n").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("content_type_mismatch"))
    );
    let (status, body) = put(&server, &url, b"\x89PNG\r\n\x1a\n\0\0\0\0\0").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("file_too_large"))
    );
    let (status, body) = put(&server, &url, b"\x89PNG").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("size_mismatch"))
    );

    // Nothing refused reached the chat: the next entry is seq 2.
    ada.send(&json!({"request_id": "t", "chat": {"text": "after", "client_id": "after"}}))
        .await?;
    let sent = ada.recv_kind("chat_sent", WAIT).await?;
    assert_eq!(sent["chat_sent"]["seq"], 2);

    // Deleting the message takes the file away from every link already given out.
    ada.send(&json!({"request_id": "d", "chat_delete": {"seq": 1}}))
        .await?;
    ada.recv_kind("chat_sent", WAIT).await?;
    let gone = confer_http::client()?.get(server.url(&link)).send().await?;
    assert_eq!(gone.status().as_u16(), 404);
    assert_eq!(
        gone.json::<Value>().await?["error"]["code"],
        "file_not_found"
    );
    let stored: Vec<_> = std::fs::read_dir(&dir)?.collect();
    assert!(stored.is_empty(), "its bytes are removed too: {stored:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Shares `PNG` in the client's room; returns the stored file's name.
async fn share(
    server: &TestServer,
    client: &mut SignalClient,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let before = stored(dir);
    let reply = ask(client, "tiny.png", "image/png", PNG.len()).await?;
    let url = reply["file_upload"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, body) = put(server, &url, PNG).await?;
    anyhow::ensure!(status == 201, "upload: {status} {body}");
    let after = stored(dir);
    after
        .into_iter()
        .find(|name| !before.contains(name))
        .ok_or_else(|| anyhow::anyhow!("no file stored"))
}

fn stored(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `file` is no longer stored.
async fn removed(dir: &std::path::Path, file: &str) -> bool {
    for _ in 0..50 {
        if !stored(dir).iter().any(|name| name == file) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A file's bytes go with its message however the message goes: the room's retention
/// expires it, or the tenant deletes the room. Files of messages still there stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_with_expired_messages_and_deleted_rooms() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("confer-files-test-{:08x}", rand_u32()));
    let server = TestServer::start_with(Options {
        gateway: GatewayConfig {
            files: FileConfig {
                dir: dir.clone(),
                sweep_every: Duration::from_millis(100),
                ..FileConfig::default()
            },
            ..GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let http = confer_http::client()?;
    let tenant_api = |method: reqwest::Method, path: &str| {
        http.request(method, server.url(path))
            .basic_auth("dev", Some(confer_e2e::server::TOKEN_SECRET))
    };
    let mut ada = join_room(&server, "brief", "Ada").await?;
    let mut bob = join_room(&server, "kept", "Bob").await?;
    let mut cy = join_room(&server, "doomed", "Cy").await?;
    let expiring = share(&server, &mut ada, &dir).await?;
    let kept = share(&server, &mut bob, &dir).await?;
    let doomed = share(&server, &mut cy, &dir).await?;

    let response = tenant_api(reqwest::Method::PUT, "/v1/rooms/brief/chat/retention")
        .json(&json!({"seconds": 1}))
        .send()
        .await?;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await?
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(server.chat.expire().await?, 1);
    assert!(
        removed(&dir, &expiring).await,
        "expired: {:?}",
        stored(&dir)
    );

    drop(cy);
    let response = tenant_api(reqwest::Method::DELETE, "/v1/rooms/doomed")
        .send()
        .await?;
    assert_eq!(
        response.status().as_u16(),
        204,
        "{}",
        response.text().await?
    );
    assert!(
        removed(&dir, &doomed).await,
        "room deleted: {:?}",
        stored(&dir)
    );

    assert_eq!(stored(&dir), vec![kept], "a file still shared stays");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
}

/// An upload link outlives the moment it was given: its sender must still be in the
/// room (or back in it after a lost connection), and the chat still open to them,
/// when the bytes arrive and when they are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_link_holds_only_while_its_sender_may_post() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("confer-files-test-{:08x}", rand_u32()));
    let server = TestServer::start_with(Options {
        gateway: GatewayConfig {
            files: FileConfig {
                dir: dir.clone(),
                ..FileConfig::default()
            },
            ..GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    // The first in is the host.
    let mut ada = join_room(&server, "rights", "Ada").await?;
    let mut bob = join_room(&server, "rights", "Bob").await?;
    let url = |reply: Value| {
        reply["file_upload"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let link = url(ask(&mut bob, "tiny.png", "image/png", PNG.len()).await?);
    assert!(link.starts_with("/files/upload/"), "{link}");

    // The host keeps the chat to hosts before the bytes arrive: refused, nothing kept.
    ada.send(&json!({"request_id": "h", "host": {"action": "deny_chat"}}))
        .await?;
    ada.recv_kind("ack", WAIT).await?;
    let (status, body) = put(&server, &link, PNG).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("chat_restricted")),
        "{body}"
    );
    assert!(stored(&dir).is_empty(), "{:?}", stored(&dir));

    // Open again, the same link shares the file.
    ada.send(&json!({"request_id": "h", "host": {"action": "allow_chat"}}))
        .await?;
    ada.recv_kind("ack", WAIT).await?;
    let (status, body) = put(&server, &link, PNG).await?;
    assert_eq!((status, body["seq"].as_u64()), (201, Some(1)), "{body}");
    let shared = stored(&dir);

    // An upload under way when the chat is kept to hosts is refused at its end.
    let link = url(ask(&mut bob, "slow.png", "image/png", PNG.len()).await?);
    let mut upload = tokio::net::TcpStream::connect(server.http).await?;
    let head = format!(
        "PUT {link} HTTP/1.1\r\nhost: confer\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        PNG.len()
    );
    upload.write_all(head.as_bytes()).await?;
    upload.write_all(&PNG[..8]).await?;
    // The upload has begun (its link was checked as the request came).
    tokio::time::sleep(Duration::from_millis(300)).await;
    ada.send(&json!({"request_id": "h", "host": {"action": "deny_chat"}}))
        .await?;
    ada.recv_kind("ack", WAIT).await?;
    upload.write_all(&PNG[8..]).await?;
    let mut answer = String::new();
    upload.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("chat_restricted"), "{answer}");
    assert_eq!(stored(&dir), shared, "nothing more kept");
    ada.send(&json!({"request_id": "h", "host": {"action": "allow_chat"}}))
        .await?;
    ada.recv_kind("ack", WAIT).await?;

    // A sender whose connection dropped after he was given a link, and who came back
    // with his rejoin ticket (under a new participant id), still shares through it.
    let mut cyd = SignalClient::connect(&server.signal_url()).await?;
    cyd.send(&json!({"request_id": "j", "join": {"room": "rights", "name": "Cyd"}}))
        .await?;
    let joined = cyd.recv_kind("joined", WAIT).await?;
    let ticket = joined["joined"]["rejoin"].clone();
    let link = url(ask(&mut cyd, "back.png", "image/png", PNG.len()).await?);
    drop(cyd);
    let left = ada.recv_kind("participant_left", WAIT).await?;
    assert_eq!(
        left["participant_left"]["reason"], "connection_lost",
        "{left}"
    );
    let mut cyd = SignalClient::connect(&server.signal_url()).await?;
    cyd.send(
        &json!({"request_id": "j", "join": {"room": "rights", "name": "Cyd", "rejoin": ticket}}),
    )
    .await?;
    let back = cyd.recv_kind("joined", WAIT).await?;
    assert_eq!(
        back["joined"]["you"]["previous_id"], joined["joined"]["you"]["id"],
        "{back}"
    );
    let (status, body) = put(&server, &link, PNG).await?;
    assert_eq!(status, 201, "{body}");
    cyd.leave().await?;
    ada.recv_kind("participant_left", WAIT).await?;

    // Bob asks at once after the chat was opened: his session may not have heard of
    // it yet, and the room service has the last word. A sender who has left since
    // cannot use a link given before.
    let link = url(ask(&mut bob, "tiny.png", "image/png", PNG.len()).await?);
    bob.send(&json!({"request_id": "l", "leave": {}})).await?;
    ada.recv_kind("participant_left", WAIT).await?;
    let (status, body) = put(&server, &link, PNG).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_a_member")),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
