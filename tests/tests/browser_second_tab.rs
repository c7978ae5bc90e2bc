//! One place per identity in real browsers: Gus opens his join link in a second tab
//! while the first is in the call. The second takes his place; the first says why and
//! stays out (it does not join again, which would end the second in turn); the host
//! sees Gus once, in one tile.

use std::time::Duration;

use confer_e2e::browser::Driver;
use confer_e2e::joins::{guest_token, host_token, open_room};
use confer_e2e::server::TestServer;
use confer_room::RoomApi as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tab_takes_the_place_and_the_first_stays_out() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    open_room(&server, "desk").await?;
    let driver = Driver::start().await?;
    let host = driver.browser().await?;
    host.join_call(&server.url(&format!("/r/desk?token={}", host_token("desk", "hana"))))
        .await?;
    let gus_link = server.url(&format!("/r/desk?token={}", guest_token("desk", "gus")));
    let first_tab = driver.browser().await?;
    let first = first_tab.join_call(&gus_link).await?;
    host.wait_for(
        "Gus's tile",
        &format!("return !!document.querySelector('.tile.remote[data-participant=\"{first}\"]');"),
        Duration::from_secs(10),
    )
    .await?;

    let second_tab = driver.browser().await?;
    let second = second_tab.join_call(&gus_link).await?;
    assert_ne!(first, second);
    first_tab
        .wait_for(
            "the first tab told why",
            "return document.getElementById('status').textContent === 'You joined this call from another tab or device';",
            Duration::from_secs(10),
        )
        .await?;
    host.wait_for(
        "Gus once, under his new id",
        &format!(
            "const tiles = [...document.querySelectorAll('.tile.remote')];
             return tiles.length === 1 && tiles[0].dataset.participant === '{second}';"
        ),
        Duration::from_secs(10),
    )
    .await?;

    // Past the SDK's first tries to join again (1 s and 2 s, each up to half again):
    // the first tab stays out, the second stays in.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let done = first_tab
        .eval("return window.conferClient.done === true;")
        .await?;
    assert_eq!(done, true, "the first tab does not join again");
    let still = second_tab
        .eval("return window.conferClient.self.id;")
        .await?;
    assert_eq!(still.as_str(), Some(second.as_str()));
    let listed = server
        .room
        .list_participants("dev".into(), "desk".into())
        .await?;
    let gus: Vec<&str> = listed
        .iter()
        .filter(|p| p.identity == "gus")
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(gus, [second.as_str()]);
    assert_eq!(
        second_tab
            .eval("return document.getElementById('status').textContent;")
            .await?,
        "Connected"
    );
    Ok(())
}
