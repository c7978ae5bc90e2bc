//! The tenant REST API over real HTTP: every documented route, strict bodies, tenant
//! isolation, the OpenAPI document checked by an OpenAPI validator, and webhooks that
//! survive a failing receiver.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_e2e::server::{Options, TestServer};
use confer_e2e::signal::{SignalClient, client_offer};
use confer_room::api::RoomApi as _;
use confer_room::webhook::WebhookConfig;
use reqwest::Method;
use serde_json::{Value, json};

/// `method` on the chat retention of the room `town-hall`, as `api`'s tenant.
async fn town_hall_retention(
    api: &Api,
    method: Method,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let (route, path) = (
        "/v1/rooms/{room}/chat/retention",
        "/v1/rooms/town-hall/chat/retention",
    );
    api.call(method, route, path, body).await
}

/// The recordings of the room `town-hall`, as `api`'s tenant.
async fn town_hall_recordings(api: &Api) -> anyhow::Result<(u16, Value)> {
    let (route, path) = (
        "/v1/rooms/{room}/recordings",
        "/v1/rooms/town-hall/recordings",
    );
    api.call(Method::GET, route, path, None).await
}

/// `method` on the recording `name` of the room `town-hall`, as `api`'s tenant.
async fn town_hall_recording(
    api: &Api,
    method: Method,
    name: &str,
) -> anyhow::Result<(u16, Value)> {
    let path = format!("/v1/rooms/town-hall/recordings/{name}");
    api.call(method, "/v1/rooms/{room}/recordings/{file}", &path, None)
        .await
}

/// A tenant's API client that records which routes it has called.
struct Api {
    tenant: String,
    base: String,
    key: String,
    secret: String,
    http: reqwest::Client,
    covered: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        route: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.covered
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert((method.as_str().to_lowercase(), route.to_owned()));
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, value))
    }

    /// An access token for `room` signed with this tenant's key.
    fn token(&self, room: &str, identity: &str, name: &str, admin: bool) -> String {
        confer_auth::TokenKey::new(self.key.clone(), self.secret.as_bytes()).sign(
            &confer_auth::Claims {
                iss: self.key.clone(),
                sub: identity.into(),
                name: name.into(),
                nbf: 0,
                exp: u64::MAX / 2,
                kind: Default::default(),
                video: confer_auth::VideoGrant {
                    room_admin: admin,
                    ..confer_auth::VideoGrant::join(room)
                },
            },
        )
    }

    async fn raw(&self, method: Method, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// `method` on `route` at `path`, answered with bytes: status, content type, body.
    async fn bytes(
        &self,
        method: Method,
        route: &str,
        path: &str,
    ) -> anyhow::Result<(u16, String, Vec<u8>)> {
        self.covered
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert((method.as_str().to_lowercase(), route.to_owned()));
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .send()
            .await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((status, content_type, response.bytes().await?.to_vec()))
    }
}

/// A recording of `room`'s participant `PA_ada` in `dir` as the SFU names and writes
/// one (a second of Opus frames), finished or still being written: its file name and
/// bytes.
fn recorded(
    dir: &std::path::Path,
    room: &str,
    finished: bool,
) -> anyhow::Result<(String, Vec<u8>)> {
    use confer_sfu::record::{TrackFormat, Webm, path_part};
    let room_dir = dir.join(path_part(room));
    std::fs::create_dir_all(&room_dir)?;
    let started = if finished {
        1_796_000_000_000u64
    } else {
        1_796_000_000_500
    };
    let name = format!(
        "PA_ada.microphone.{started}.webm{}",
        if finished { "" } else { ".part" }
    );
    let mut webm = Webm::start(std::io::Cursor::new(Vec::new()), TrackFormat::Opus, started)?;
    for frame in 0..50u64 {
        webm.frame(frame * 20, true, &[0xfc, 0xff, 0xfe])?;
    }
    let bytes = webm.finish(1_000)?.into_inner();
    std::fs::write(room_dir.join(&name), &bytes)?;
    Ok((name, bytes))
}

async fn api_for(
    server: &TestServer,
    covered: &Arc<Mutex<BTreeSet<(String, String)>>>,
) -> anyhow::Result<Api> {
    let tenant = server.room.store().create_tenant("Acme").await?;
    Ok(Api {
        tenant: tenant.tenant,
        base: server.url(""),
        key: tenant.api_key,
        secret: tenant.api_secret,
        http: confer_http::client()?,
        covered: covered.clone(),
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_works_and_refuses_bad_input() -> anyhow::Result<()> {
    let recordings =
        std::env::temp_dir().join(format!("confer-api-recordings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recordings);
    let server = TestServer::start_with(Options {
        gateway: confer_gateway::GatewayConfig {
            recordings: Some(recordings.clone()),
            ..confer_gateway::GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let covered = Arc::new(Mutex::new(BTreeSet::new()));
    let api = api_for(&server, &covered).await?;
    let other = api_for(&server, &covered).await?;

    let (status, room) = api.call(Method::POST, "/v1/rooms", "/v1/rooms", Some(json!({"name": "town-hall", "settings": {"waiting_room": false, "max_participants": 50}}))).await?;
    assert_eq!(status, 201, "{room}");
    assert_eq!(room["settings"]["max_participants"], 50);
    assert_eq!(room["has_password"], false);
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/rooms",
            "/v1/rooms",
            Some(json!({"name": "town-hall"})),
        )
        .await?;
    assert_eq!((status, code(&body)), (409, "room_exists"));
    let (status, list) = api
        .call(Method::GET, "/v1/rooms", "/v1/rooms", None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}",
            "/v1/rooms/town-hall",
            Some(json!({"password": "hunter22"})),
        )
        .await?;
    assert_eq!(
        (status, &body["has_password"]),
        (200, &json!(true)),
        "{body}"
    );
    // A patch of settings changes the ones it names; the others stay.
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}",
            "/v1/rooms/town-hall",
            Some(json!({"settings": {"allow_chat": false}})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["allow_chat"], false, "{body}");
    assert_eq!(body["settings"]["waiting_room"], false, "{body}");
    assert_eq!(body["settings"]["max_participants"], 50, "{body}");
    assert_eq!(body["has_password"], true, "{body}");
    for bad in [
        json!({"allow_chatt": true}),
        json!({"max_participants": "many"}),
        json!({"max_participants": 0}),
    ] {
        let (status, body) = api
            .call(
                Method::PATCH,
                "/v1/rooms/{room}",
                "/v1/rooms/town-hall",
                Some(json!({ "settings": bad })),
            )
            .await?;
        assert_eq!((status, code(&body)), (400, "invalid_settings"), "{body}");
    }
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}",
            "/v1/rooms/town-hall",
            Some(json!({"settings": {"allow_chat": true}})),
        )
        .await?;
    assert_eq!(
        (status, &body["settings"]["allow_chat"]),
        (200, &json!(true))
    );

    // Tenants see only their own rooms.
    let (status, body) = other
        .call(Method::GET, "/v1/rooms/{room}", "/v1/rooms/town-hall", None)
        .await?;
    assert_eq!((status, code(&body)), (404, "room_not_found"));

    // Bad input: malformed JSON, unknown fields, wrong types, bad auth, bad values.
    let (status, body) = api.raw(Method::POST, "/v1/rooms", "{\"name\": ").await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    let (status, body) = api
        .raw(
            Method::POST,
            "/v1/rooms",
            r#"{"name": "x", "colour": "red"}"#,
        )
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour")
    );
    let (status, body) = api
        .raw(
            Method::POST,
            "/v1/rooms",
            r#"{"name": "x", "settings": {"locked": "yes"}}"#,
        )
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    let (status, body) = api
        .raw(
            Method::POST,
            "/v1/rooms",
            r#"{"name": "x", "settings": {"colour": "red"}}"#,
        )
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{body}"
    );
    let (status, body) = api
        .raw(Method::POST, "/v1/rooms", r#"{"name": "no spaces"}"#)
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_room"));
    let unauthorized = confer_http::client()?
        .get(server.url("/v1/rooms"))
        .basic_auth(&api.key, Some("wrong"))
        .send()
        .await?;
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(code(&unauthorized.json::<Value>().await?), "unauthorized");

    // A participant joins with the password; the tenant sees and manages it.
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    let token = api.token("town-hall", "ada", "Ada", false);
    client.send(&json!({"request_id": "j", "join": {"room": "town-hall", "token": token, "password": "hunter22", "offer": {"type": "offer", "sdp": client_offer(1)?}}})).await?;
    let joined = client.recv_kind("joined", Duration::from_secs(5)).await?;
    let id = joined["joined"]["you"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, people) = api
        .call(
            Method::GET,
            "/v1/rooms/{room}/participants",
            "/v1/rooms/town-hall/participants",
            None,
        )
        .await?;
    assert_eq!((status, &people[0]["identity"]), (200, &json!("ada")));
    let one = format!("/v1/rooms/town-hall/participants/{id}");
    let (status, body) = api
        .call(
            Method::GET,
            "/v1/rooms/{room}/participants/{participant}",
            &one,
            None,
        )
        .await?;
    assert_eq!((status, &body["name"]), (200, &json!("Ada")));
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}/participants/{participant}",
            &one,
            Some(json!({"metadata": "vip", "name": "Ada L."})),
        )
        .await?;
    assert_eq!((status, &body["metadata"]), (200, &json!("vip")), "{body}");
    let updated = client
        .recv_kind("participant_updated", Duration::from_secs(5))
        .await?;
    assert_eq!(
        updated["participant_updated"]["participant"]["name"],
        "Ada L."
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/rooms/{room}/participants/{participant}/mute",
            &format!("{one}/mute"),
            Some(json!({"kind": "audio", "muted": true})),
        )
        .await?;
    assert_eq!(
        (status, &body["audio_blocked"]),
        (200, &json!(true)),
        "{body}"
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/rooms/{room}/data",
            "/v1/rooms/town-hall/data",
            Some(json!({"payload": "hello", "topic": "news"})),
        )
        .await?;
    assert_eq!(status, 202);
    let data = client.recv_kind("data", Duration::from_secs(5)).await?;
    assert_eq!(data["data"]["payload"], "hello");

    // The room's chat, exported a page at a time; its retention set.
    for i in 1..=3 {
        client
            .send(&json!({"request_id": format!("c{i}"), "chat": {"text": format!("note {i}"), "client_id": format!("n{i}")}}))
            .await?;
        client
            .recv_kind("chat_sent", Duration::from_secs(5))
            .await?;
    }
    let (status, page) = api
        .call(
            Method::GET,
            "/v1/rooms/{room}/chat",
            "/v1/rooms/town-hall/chat?limit=2",
            None,
        )
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["more"].as_bool(), page["next_after"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(page["messages"][1]["text"], "note 2");
    assert_eq!(page["messages"][0]["name"], "Ada L.");
    assert_eq!(
        page["messages"][0]["identity"], "ada",
        "who, across connections"
    );
    let (_, rest) = api
        .call(
            Method::GET,
            "/v1/rooms/{room}/chat",
            "/v1/rooms/town-hall/chat?after=2",
            None,
        )
        .await?;
    assert_eq!(
        (rest["messages"][0]["seq"].as_u64(), rest["more"].as_bool()),
        (Some(3), Some(false))
    );
    let (status, body) = other
        .call(
            Method::GET,
            "/v1/rooms/{room}/chat",
            "/v1/rooms/town-hall/chat",
            None,
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (404, "room_not_found"),
        "another tenant's room: {body}"
    );
    let default = json!({"seconds": 0, "source": "default"});
    let (status, body) = town_hall_retention(&api, Method::GET, None).await?;
    assert_eq!((status, &body), (200, &default), "never set: the default");
    let a_day = Some(json!({"seconds": 86_400}));
    let (status, body) = town_hall_retention(&api, Method::PUT, a_day).await?;
    let a_day = json!({"seconds": 86_400, "source": "room"});
    assert_eq!((status, &body), (200, &a_day), "{body}");
    let (_, body) = town_hall_retention(&api, Method::GET, None).await?;
    assert_eq!(body, a_day, "read back");
    let (status, body) = town_hall_retention(&other, Method::GET, None).await?;
    assert_eq!((status, code(&body)), (404, "room_not_found"), "{body}");
    let (status, body) = town_hall_retention(&api, Method::DELETE, None).await?;
    assert_eq!(
        (status, &body),
        (200, &default),
        "cleared: the default again"
    );
    let (status, body) = api
        .raw(
            Method::PUT,
            "/v1/rooms/town-hall/chat/retention",
            r#"{"seconds": -1}"#,
        )
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"));
    let (status, _) = api
        .call(
            Method::DELETE,
            "/v1/rooms/{room}/participants/{participant}",
            &one,
            None,
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(
        client.recv_kind("error", Duration::from_secs(5)).await?["error"]["code"],
        "removed"
    );

    // Recordings: listed as the SFUs leave them in the recordings directory, one
    // handed out and removed; nothing of another tenant's room.
    let (status, listed) = town_hall_recordings(&api).await?;
    assert_eq!((status, listed["recordings"].clone()), (200, json!([])));
    let town_hall = format!("{}/town-hall", api.tenant);
    let (done, done_bytes) = recorded(&recordings, &town_hall, true)?;
    let (writing, _) = recorded(&recordings, &town_hall, false)?;
    std::fs::write(
        recordings
            .join(confer_sfu::record::path_part(&town_hall))
            .join("notes.txt"),
        "not a recording",
    )?;
    let (status, listed) = town_hall_recordings(&api).await?;
    assert_eq!(status, 200);
    assert_eq!(
        listed["recordings"],
        json!([
            {"file": done, "participant_id": "PA_ada", "source": "microphone", "started_at_ms": 1_796_000_000_000u64, "bytes": done_bytes.len(), "complete": true, "duration_ms": 1_000},
            {"file": writing, "participant_id": "PA_ada", "source": "microphone", "started_at_ms": 1_796_000_000_500u64, "bytes": done_bytes.len(), "complete": false, "duration_ms": null},
        ])
    );
    let file_route = "/v1/rooms/{room}/recordings/{file}";
    let (status, content_type, body) = api
        .bytes(
            Method::GET,
            file_route,
            &format!("/v1/rooms/town-hall/recordings/{done}"),
        )
        .await?;
    assert_eq!((status, content_type.as_str()), (200, "audio/webm"));
    assert_eq!(body, done_bytes);
    for name in [writing.as_str(), "notes.txt", "..%2F..%2Fpasswd"] {
        let (status, body) = town_hall_recording(&api, Method::GET, name).await?;
        assert_eq!(
            (status, code(&body)),
            (404, "recording_not_found"),
            "{name}"
        );
    }
    let (status, body) = town_hall_recording(&other, Method::GET, &done).await?;
    assert_eq!((status, code(&body)), (404, "recording_not_found"));
    let (status, listed) = town_hall_recordings(&other).await?;
    assert_eq!(
        (status, listed["recordings"].clone()),
        (200, json!([])),
        "not another tenant's"
    );
    let (status, _) = town_hall_recording(&api, Method::DELETE, &done).await?;
    assert_eq!(status, 204);
    let (status, body) = town_hall_recording(&api, Method::DELETE, &done).await?;
    assert_eq!((status, code(&body)), (404, "recording_not_found"));
    let (_, listed) = town_hall_recordings(&api).await?;
    assert_eq!(
        listed["recordings"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );

    // Webhook endpoints.
    let (status, hook) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            "/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await?;
    assert_eq!(status, 201);
    assert!(
        hook["secret"]
            .as_str()
            .unwrap_or_default()
            .starts_with("whsec_")
    );
    let (status, hooks) = api
        .call(Method::GET, "/v1/webhooks", "/v1/webhooks", None)
        .await?;
    assert_eq!(
        (status, hooks[0].get("secret")),
        (200, None),
        "the secret is shown once"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            "/v1/webhooks",
            Some(json!({"url": "ftp://x"})),
        )
        .await?;
    assert_eq!((status, code(&body)), (400, "invalid_url"));
    let (status, dead) = api
        .call(
            Method::GET,
            "/v1/webhooks/dead-letters",
            "/v1/webhooks/dead-letters",
            None,
        )
        .await?;
    assert_eq!((status, dead.is_array()), (200, true));
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap_or_default());
    let (status, _) = api
        .call(Method::DELETE, "/v1/webhooks/{webhook}", &hook_path, None)
        .await?;
    assert_eq!(status, 204);
    let (status, body) = api
        .call(Method::DELETE, "/v1/webhooks/{webhook}", &hook_path, None)
        .await?;
    assert_eq!((status, code(&body)), (404, "webhook_not_found"));

    let (status, _) = api
        .call(
            Method::DELETE,
            "/v1/rooms/{room}",
            "/v1/rooms/town-hall",
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(Method::GET, "/v1/rooms/{room}", "/v1/rooms/town-hall", None)
        .await?;
    assert_eq!(status, 404);
    // Its recordings stay until removed.
    let (status, listed) = town_hall_recordings(&api).await?;
    assert_eq!(status, 200);
    assert_eq!(
        listed["recordings"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let _ = std::fs::remove_dir_all(&recordings);

    // The OpenAPI document: valid by an independent validator, and covering exactly
    // the routes exercised above.
    let (status, document) = api
        .call(Method::GET, "/v1/openapi.json", "/v1/openapi.json", None)
        .await?;
    assert_eq!(status, 200);
    let file = std::env::temp_dir().join(format!("confer-openapi-{}.json", std::process::id()));
    std::fs::write(&file, document.to_string())?;
    let validated = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()?;
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let documented: BTreeSet<(String, String)> = confer_gateway::api::ROUTES
        .iter()
        .map(|(method, path, _, _)| (method.to_string(), path.to_string()))
        .collect();
    let covered = covered
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(covered, documented, "every documented route is tested");
    let paths = document["paths"]
        .as_object()
        .map(|p| p.len())
        .unwrap_or_default();
    assert_eq!(
        paths,
        documented
            .iter()
            .map(|(_, p)| p)
            .collect::<BTreeSet<_>>()
            .len()
    );
    Ok(())
}

/// What a webhook receiver saw: (event id, event name, body, signature) of the
/// deliveries it accepted, and how many it refused.
#[derive(Default)]
struct Received {
    accepted: Vec<(String, String, String, String)>,
    refused: usize,
}

/// A receiver that answers 500 to the first `failures` deliveries.
async fn webhook_receiver(failures: usize) -> anyhow::Result<(String, Arc<Mutex<Received>>)> {
    use axum::http::{HeaderMap, StatusCode};
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let Ok(mut seen) = state.lock() else {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                };
                if seen.refused < failures {
                    seen.refused += 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let event = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                seen.accepted.push((
                    header("confer-webhook-id"),
                    event,
                    body,
                    header("confer-signature"),
                ));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// A server whose webhook deliveries are retried quickly, a tenant's API on it, and a
/// receiver registered as the tenant's endpoint that answers 500 to the first
/// `failures` deliveries; and the endpoint's signing secret.
async fn with_webhooks(
    failures: usize,
) -> anyhow::Result<(TestServer, Api, Arc<Mutex<Received>>, String)> {
    let server = TestServer::start_with(Options {
        webhooks: WebhookConfig {
            backoff_base: Duration::from_millis(40),
            poll_interval: Duration::from_millis(20),
            ..WebhookConfig::default()
        },
        // Recordings are kept (nothing is written here: no media flows).
        gateway: confer_gateway::GatewayConfig {
            recordings: Some(
                std::env::temp_dir()
                    .join(format!("confer-webhook-recordings-{}", std::process::id())),
            ),
            ..confer_gateway::GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let covered = Arc::new(Mutex::new(BTreeSet::new()));
    let api = api_for(&server, &covered).await?;
    let (url, received) = webhook_receiver(failures).await?;
    let (_, hook) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            "/v1/webhooks",
            Some(json!({"url": url})),
        )
        .await?;
    let secret = hook["secret"].as_str().unwrap_or_default().to_owned();
    Ok((server, api, received, secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_once_in_order_and_signed_despite_failures() -> anyhow::Result<()> {
    let (server, api, received, secret) = with_webhooks(3).await?;

    // A host opens the room, publishes nothing, records a while, leaves.
    let token = api.token("retro", "hana", "Hana", true);
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client.send(&json!({"request_id": "j", "join": {"room": "retro", "token": token, "offer": {"type": "offer", "sdp": client_offer(1)?}}})).await?;
    client.recv_kind("joined", Duration::from_secs(5)).await?;
    for action in ["start_recording", "stop_recording"] {
        client
            .send(&json!({"request_id": action, "host": {"action": action}}))
            .await?;
        let state = client
            .recv_kind("room_state", Duration::from_secs(5))
            .await?;
        assert_eq!(
            state["room_state"]["recording"].as_bool().unwrap_or(false),
            action == "start_recording",
            "{state}"
        );
    }
    client.send(&json!({"leave": {}})).await?;

    let expected = [
        "room_started",
        "participant_joined",
        "recording_started",
        "recording_stopped",
        "participant_left",
        "room_finished",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let count = received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .accepted
            .len();
        if count >= expected.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {count} deliveries arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let any duplicate show up before judging.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (refused, accepted) = {
        let seen = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        (seen.refused, seen.accepted.clone())
    };
    assert_eq!(refused, 3);
    let events: Vec<&str> = accepted
        .iter()
        .map(|(_, event, _, _)| event.as_str())
        .collect();
    assert_eq!(events, expected, "in order, each once");
    let ids: BTreeSet<&str> = accepted.iter().map(|(id, _, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), expected.len(), "distinct ids");
    for (id, _, body, signature) in &accepted {
        let body_json: Value = serde_json::from_str(body)?;
        assert_eq!(body_json["id"], id.as_str());
        assert_eq!(body_json["room"]["name"], "retro");
        let timestamp: u64 = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        assert_eq!(
            signature,
            &confer_room::webhook::signature(&secret, timestamp, body),
            "signature verifies with the endpoint's secret"
        );
    }
    let (_, _, left, _) = &accepted[4];
    let left: Value = serde_json::from_str(left)?;
    assert_eq!(left["reason"], "left", "a leave is for good: {left}");
    let (_, dead) = api
        .call(
            Method::GET,
            "/v1/webhooks/dead-letters",
            "/v1/webhooks/dead-letters",
            None,
        )
        .await?;
    assert_eq!(dead, json!([]));
    Ok(())
}

/// The events `received` has accepted once there are `count` of them (each event's
/// name, its body, and when it arrived).
async fn events(
    received: &Arc<Mutex<Received>>,
    count: usize,
) -> anyhow::Result<Vec<(String, Value, std::time::Instant)>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut arrived = Vec::new();
    loop {
        let accepted = received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .accepted
            .clone();
        while arrived.len() < accepted.len() {
            arrived.push(std::time::Instant::now());
        }
        if accepted.len() >= count {
            return accepted
                .into_iter()
                .zip(arrived)
                .map(|((_, event, body, _), at)| Ok((event, serde_json::from_str(&body)?, at)))
                .collect();
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} of {count} events arrived",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `token`'s holder joins `room` through a new connection (with `ticket`, to come
/// back): the connection and its `joined`.
async fn join_with(
    server: &TestServer,
    room: &str,
    token: &str,
    ticket: &str,
) -> anyhow::Result<(SignalClient, Value)> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    let join = json!({"request_id": "j", "join": {"room": room, "token": token, "rejoin": ticket}});
    client.send(&join).await?;
    let joined = client.recv_kind("joined", Duration::from_secs(5)).await?;
    Ok((client, joined["joined"].clone()))
}

/// A room's session goes on while its only participant, whose connection was lost,
/// comes back: the tenant hears it leave (`connection_lost`) and join again (naming
/// its `previous_id`), and `room_finished` only once it leaves for good. A room with
/// an empty timeout finishes that long after its last participant left; one whose
/// last participant leaves right after its media was lost finishes without waiting
/// for it to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_session_waits_for_a_lost_participant_and_its_empty_timeout() -> anyhow::Result<()>
{
    let (server, api, received, _) = with_webhooks(0).await?;

    let token = api.token("standup", "hana", "Hana", true);
    let (first, joined) = join_with(&server, "standup", &token, "").await?;
    let first_id = joined["you"]["id"].as_str().unwrap_or_default().to_owned();
    drop(first);
    events(&received, 3).await?;
    let ticket = joined["rejoin"].as_str().unwrap_or_default();
    let (mut back, _) = join_with(&server, "standup", &token, ticket).await?;
    back.send(&json!({"leave": {}})).await?;
    let seen = events(&received, 6).await?;
    let names: Vec<&str> = seen.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "room_started",
            "participant_joined",
            "participant_left",
            "participant_joined",
            "participant_left",
            "room_finished"
        ],
        "one session"
    );
    assert_eq!(seen[2].1["reason"], "connection_lost");
    assert_eq!(seen[3].1["participant"]["previous_id"], first_id.as_str());
    assert_eq!(seen[4].1["reason"], "left");

    let (_, room) = api
        .call(
            Method::POST,
            "/v1/rooms",
            "/v1/rooms",
            Some(json!({"name": "lobby", "settings": {"empty_timeout_secs": 1}})),
        )
        .await?;
    assert_eq!(room["settings"]["empty_timeout_secs"], 1, "{room}");
    let token = api.token("lobby", "ida", "Ida", true);
    let (mut ida, _) = join_with(&server, "lobby", &token, "").await?;
    ida.send(&json!({"leave": {}})).await?;
    let seen = events(&received, 9).await?;
    let names: Vec<&str> = seen[6..].iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["room_started", "participant_joined", "participant_left"],
        "no room_finished at once"
    );
    let seen = events(&received, 10).await?;
    assert_eq!(seen[9].0, "room_finished");
    assert_eq!(seen[9].1["room"]["name"], "lobby");
    let waited = seen[9].2 - seen[8].2;
    assert!(
        waited >= Duration::from_millis(800),
        "finished after the room's empty timeout: {waited:?}"
    );

    // The last one's media is lost, and its leave comes right after (its page closed):
    // it will not come back, and the room no longer waits the 120 s it would for it.
    let token = api.token("retro", "ola", "Ola", true);
    let (_ola, joined) = join_with(&server, "retro", &token, "").await?;
    let ola = joined["you"]["id"].as_str().unwrap_or_default().to_owned();
    server.room.disconnected(ola.clone()).await?;
    let seen = events(&received, 13).await?;
    let names: Vec<&str> = seen[10..]
        .iter()
        .map(|(name, _, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        ["room_started", "participant_joined", "participant_left"]
    );
    assert_eq!(seen[12].1["reason"], "connection_lost");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(&received, 13).await?.len(),
        13,
        "the room waits for Ola"
    );
    server.room.leave(ola).await?;
    let seen = events(&received, 14).await?;
    assert_eq!(seen[13].0, "room_finished");
    assert_eq!(seen[13].1["room"]["name"], "retro");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_never_get_through_are_dead_lettered_and_listed() -> anyhow::Result<()> {
    let server = TestServer::start_with(Options {
        webhooks: WebhookConfig {
            backoff_base: Duration::from_millis(20),
            poll_interval: Duration::from_millis(10),
            max_attempts: 3,
            ..WebhookConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let covered = Arc::new(Mutex::new(BTreeSet::new()));
    let api = api_for(&server, &covered).await?;
    let (url, received) = webhook_receiver(usize::MAX).await?;
    api.call(
        Method::POST,
        "/v1/webhooks",
        "/v1/webhooks",
        Some(json!({"url": url})),
    )
    .await?;
    let token = api.token("lost", "hana", "Hana", true);
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "lost", "token": token}}))
        .await?;
    client.recv_kind("joined", Duration::from_secs(5)).await?;

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, dead) = api
            .call(
                Method::GET,
                "/v1/webhooks/dead-letters",
                "/v1/webhooks/dead-letters",
                None,
            )
            .await?;
        if dead.as_array().map(Vec::len) == Some(2) {
            break dead;
        }
        assert!(std::time::Instant::now() < deadline, "dead letters: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead[0]["event"], "room_started");
    assert_eq!(dead[1]["event"], "participant_joined");
    assert_eq!(dead[0]["attempts"], 3);
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("500")
    );
    let refused = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .refused;
    assert_eq!(refused, 6, "three attempts for each of the two events");
    let counts = server.room.webhook_stats().counts();
    assert_eq!(counts.failed_attempts, 6, "{counts:?}");
    assert_eq!(counts.dead_lettered, 2, "{counts:?}");
    assert_eq!(counts.delivered, 0, "{counts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_recordings_directory_says_so() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let covered = Arc::new(Mutex::new(BTreeSet::new()));
    let api = api_for(&server, &covered).await?;
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/rooms",
            "/v1/rooms",
            Some(json!({"name": "plain"})),
        )
        .await?;
    assert_eq!(status, 201);
    let (status, body) = api
        .call(
            Method::GET,
            "/v1/rooms/{room}/recordings",
            "/v1/rooms/plain/recordings",
            None,
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (501, "recording_unavailable"),
        "{body}"
    );
    // Nor does it let a room be recorded, created so or patched so.
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}",
            "/v1/rooms/plain",
            Some(json!({"settings": {"recording": true}})),
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (501, "recording_unavailable"),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/rooms",
            "/v1/rooms",
            Some(json!({"name": "taped", "settings": {"recording": true}})),
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (501, "recording_unavailable"),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/rooms/{room}",
            "/v1/rooms/plain",
            Some(json!({"settings": {"recording": false}})),
        )
        .await?;
    assert_eq!(
        (status, body["settings"]["recording"].clone()),
        (200, json!(false)),
        "{body}"
    );
    Ok(())
}
