use std::sync::Arc;

use super::*;

fn placement(sfu: &str) -> Placement {
    Placement {
        region: "eu".into(),
        sfu: sfu.into(),
        control: format!("{sfu}:7881"),
    }
}

#[tokio::test]
async fn the_first_placement_wins_under_a_race() {
    let live = Arc::new(Live::Memory(MemoryLive::default()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let live = live.clone();
            tokio::spawn(async move { live.place("t/r", placement(&format!("sfu-{i}"))).await })
        })
        .collect();
    let mut winners = std::collections::HashSet::new();
    for task in tasks {
        winners.insert(task.await.expect("task").expect("placed").sfu);
    }
    assert_eq!(winners.len(), 1, "one room, one SFU: {winners:?}");
    let sfu = winners.into_iter().next().expect("one");
    assert_eq!(
        live.rooms_on(std::slice::from_ref(&sfu))
            .await
            .expect("count"),
        [1]
    );
    live.clear_placement("t/r", "eu").await.expect("clear");
    assert_eq!(live.rooms_on(&[sfu]).await.expect("count"), [0]);
}
