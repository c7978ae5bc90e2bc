//! The tenant API as the suites call it.

/// Creates a room through the tenant API at `base` (`http://host:port`) as the tenant
/// `key`/`secret`, with `body` (`name`, and `settings` or a `password` as wanted). A
/// refusal is an error carrying the API's answer.
pub async fn create_room(
    http: &reqwest::Client,
    base: &str,
    (key, secret): (&str, &str),
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("{base}/v1/rooms"))
        .basic_auth(key, Some(secret))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "room {} not created: {}",
        body["name"],
        response.text().await?
    );
    Ok(())
}
