//! A room that spans two regions: Ada joins through the `eu` gateway and is served by
//! the SFU in `eu`; Bob joins the same room through the `us` gateway and is served by
//! the SFU in `us`. The two SFUs are linked by a relay, and each browser decodes the
//! other's video, which crossed it. The room service reports a placement per region.

use std::time::Duration;

use confer_e2e::browser::Driver;
use confer_e2e::room::{REMOTE_VIDEO_PLAYING, open_join_link};
use confer_e2e::two_sfus::TwoSfus;
use confer_e2e::video::sample_together;
use confer_room::api::{CreateRoom, RoomApi as _};
use confer_room::model::RoomSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_in_two_regions_see_each_other_through_a_relay() -> anyhow::Result<()> {
    let deployment = TwoSfus::two_regions().await?;
    deployment
        .room
        .create_room(
            "dev".into(),
            CreateRoom {
                name: "span".into(),
                settings: RoomSettings {
                    waiting_room: false,
                    region: "eu".into(),
                    regions: vec!["us".into()],
                    ..RoomSettings::default()
                },
                password: None,
            },
        )
        .await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    open_join_link(&ada, &deployment.url_via(0, "/r/span?name=Ada"), "Ada").await?;
    open_join_link(&bob, &deployment.url_via(1, "/r/span?name=Bob"), "Bob").await?;

    // Each is on its own region's SFU.
    let (eu, us) = (&deployment.sfus[0].handle, &deployment.sfus[1].handle);
    assert_eq!(eu.occupancy().await?.peers, 1, "Ada on the eu SFU");
    assert_eq!(us.occupancy().await?.peers, 1, "Bob on the us SFU");

    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "the other region's video",
                REMOTE_VIDEO_PLAYING,
                Duration::from_secs(20),
            )
            .await?;
    }
    for window in sample_together(&[&ada, &bob], Duration::from_secs(3)).await? {
        assert!(
            window.frames_decoded >= 30,
            "video relayed across regions decodes: {window:?}"
        );
    }

    // Each hears how well the other's connection carries media, though the other's
    // SFU, which rates it, is in the other region.
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "the other region's participant rated",
                "const c = window.conferClient; const others = [...c.participants.keys()];
                 return others.length === 1 && c.qualities.has(others[0])
                   && ['excellent', 'good'].includes(c.qualities.get(others[0]));",
                Duration::from_secs(10),
            )
            .await?;
    }

    for (name, sfu) in [("eu", eu), ("us", us)] {
        let relays = sfu.relays().await?;
        assert!(
            relays.len() == 1 && relays[0].up,
            "{name}: one relay link, up: {relays:?}"
        );
        let stats = sfu.stats().snapshot();
        assert!(
            stats.relay_sent > 100 && stats.relay_received > 100 && stats.relay_rejected == 0,
            "{name}: media crosses the relay both ways: {stats:?}"
        );
    }
    let view = deployment
        .room
        .get_room("dev".into(), "span".into())
        .await?;
    let mut regions: Vec<(&str, &str)> = view
        .placements
        .iter()
        .map(|p| (p.region.as_str(), p.sfu.as_str()))
        .collect();
    regions.sort_unstable();
    assert_eq!(regions, [("eu", "sfu-a"), ("us", "sfu-b")]);
    Ok(())
}
