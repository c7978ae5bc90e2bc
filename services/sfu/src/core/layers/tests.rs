use super::*;
use proptest::prelude::*;

fn layer(width: u16, bps: u64) -> LayerView {
    LayerView {
        ssrc: u32::from(width),
        width: Some(width),
        height: Some(width * 9 / 16),
        bps,
        active: true,
    }
}

fn simulcast() -> Vec<LayerView> {
    vec![
        layer(320, 150_000),
        layer(640, 500_000),
        layer(1280, 1_500_000),
    ]
}

fn demand(wanted: Wanted) -> Demand {
    Demand {
        layers: simulcast(),
        wanted,
    }
}

#[test]
fn a_small_tile_gets_the_smallest_layer_that_covers_it() {
    let small = demand(Wanted::Size {
        width: 240,
        height: 135,
    });
    let medium = demand(Wanted::Size {
        width: 500,
        height: 280,
    });
    let large = demand(Wanted::Size {
        width: 1920,
        height: 1080,
    });
    assert_eq!(
        allocate(None, &[small, medium, large]),
        vec![Some(0), Some(1), Some(2)]
    );
}

#[test]
fn no_size_means_the_best_layer_and_hidden_means_none() {
    assert_eq!(
        allocate(None, &[demand(Wanted::Best), demand(Wanted::Paused)]),
        vec![Some(2), None]
    );
}

#[test]
fn layers_the_publisher_stopped_are_skipped() {
    let mut layers = simulcast();
    layers[2].active = false;
    let choice = allocate(
        None,
        &[Demand {
            layers,
            wanted: Wanted::Best,
        }],
    );
    assert_eq!(choice, vec![Some(1)]);
}

#[test]
fn a_tight_budget_steps_the_biggest_down_first_then_pauses() {
    let both = [demand(Wanted::Best), demand(Wanted::Best)];
    assert_eq!(allocate(Some(2_000_000), &both), vec![Some(2), Some(1)]);
    assert_eq!(allocate(Some(700_000), &both), vec![Some(1), Some(0)]);
    assert_eq!(allocate(Some(200_000), &both), vec![Some(0), None]);
    assert_eq!(allocate(Some(10_000), &both), vec![None, None]);
}

fn arb_layers() -> impl Strategy<Value = Vec<LayerView>> {
    proptest::collection::vec((1u16..4000, 0u64..5_000_000, any::<bool>()), 0..4).prop_map(
        |mut raw| {
            raw.sort_by_key(|(w, _, _)| *w);
            raw.into_iter()
                .map(|(w, bps, active)| LayerView {
                    active,
                    ..layer(w, bps)
                })
                .collect()
        },
    )
}

fn arb_wanted() -> impl Strategy<Value = Wanted> {
    prop_oneof![
        Just(Wanted::Best),
        Just(Wanted::Paused),
        (0u32..5000, 0u32..3000).prop_map(|(width, height)| Wanted::Size { width, height }),
    ]
}

proptest! {
    #[test]
    fn allocation_fits_the_budget_and_never_exceeds_the_wish(
        demands in proptest::collection::vec(
            (arb_layers(), arb_wanted()).prop_map(|(layers, wanted)| Demand { layers, wanted }),
            0..6,
        ),
        budget in proptest::option::of(0u64..8_000_000),
    ) {
        let choices = allocate(budget, &demands);
        prop_assert_eq!(choices.len(), demands.len());
        let unconstrained = allocate(None, &demands);
        let mut total = 0;
        for ((choice, wish), demand) in choices.iter().zip(&unconstrained).zip(&demands) {
            if let Some(i) = choice {
                prop_assert!(*i < demand.layers.len());
                prop_assert!(Some(*i) <= *wish, "allocated above the wish");
                prop_assert!(demand.wanted != Wanted::Paused);
                total += demand.layers[*i].bps;
            }
        }
        if let Some(budget) = budget {
            prop_assert!(total <= budget, "{total} over the budget {budget}");
        }
    }
}

#[test]
fn an_estimate_caps_only_while_below_what_is_sent() {
    let start = Instant::now();
    let mut congestion = Congestion::default();
    // A low estimate that is only slowly rising is no congestion.
    congestion.on_estimate(start, 200_000, 600_000);
    congestion.on_estimate(start, 220_000, 600_000);
    assert_eq!(congestion.budget(start), None);
    congestion.on_estimate(start, 900_000, 600_000);
    assert_eq!(congestion.budget(start), None);
    // A drop below what is sent is.
    congestion.on_estimate(start, 300_000, 600_000);
    assert_eq!(congestion.budget(start), Some(300_000));
    let later = start + Duration::from_secs(11);
    assert_eq!(congestion.budget(later), None);
    // Right after a layer change the estimate lags behind the new rate.
    congestion.rate_changed(later);
    congestion.on_estimate(later, 900_000, 1_500_000);
    congestion.on_estimate(later, 300_000, 1_500_000);
    assert_eq!(congestion.budget(later), None);
}
