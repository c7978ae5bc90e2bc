//! A histogram read off the server's Prometheus `/metrics` at the window's edges: what
//! the server itself measured during the window (for Confer, the SFU's forwarding
//! delay, arrival to send, which the clients cannot see apart from their own stacks).

use anyhow::Context as _;

/// The SFU's arrival-to-send histogram.
pub const FORWARD_DELAY: &str = "confer_sfu_forward_delay_seconds";

/// One histogram's cumulative buckets (`le` in seconds, ascending, `+Inf` last) and
/// the sum of what it observed (0 where the text has no `_sum`).
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub cumulative: Vec<(f64, u64)>,
    pub sum: f64,
}

impl Buckets {
    /// Reads histogram `name` from Prometheus text.
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        let prefix = format!("{name}_bucket{{");
        let mut cumulative = Vec::new();
        for line in text.lines().filter(|line| line.starts_with(&prefix)) {
            let (labels, value) = line[prefix.len()..]
                .split_once("} ")
                .with_context(|| format!("unreadable bucket line: {line}"))?;
            let le = labels
                .split(',')
                .find_map(|label| label.strip_prefix("le=\""))
                .and_then(|rest| rest.strip_suffix('"'))
                .with_context(|| format!("bucket line without le: {line}"))?;
            let le: f64 = le.parse().with_context(|| format!("bad le in: {line}"))?;
            let count: f64 = value
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("bad count in: {line}"))?;
            cumulative.push((le, count as u64));
        }
        anyhow::ensure!(!cumulative.is_empty(), "no {name} histogram in the metrics");
        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self {
            cumulative,
            sum: sum_of(text, name)?,
        })
    }

    /// What was observed after `earlier` was read (same histogram).
    pub fn since(&self, earlier: &Self) -> Self {
        let cumulative = self
            .cumulative
            .iter()
            .map(|&(le, n)| {
                let before = earlier
                    .cumulative
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0, |(_, c)| *c);
                (le, n.saturating_sub(before))
            })
            .collect();
        Self {
            cumulative,
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// The mean of what was observed, in the histogram's unit; `None` when nothing was.
    pub fn mean(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum / count as f64)
    }

    pub fn count(&self) -> u64 {
        self.cumulative.last().map_or(0, |(_, n)| *n)
    }

    /// The smallest bucket bound at or under which a share `q` of observations fall:
    /// an upper bound of the `q` quantile. `None` when there are none, or when that
    /// share reaches past the last finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let needed = (q * count as f64).ceil() as u64;
        self.cumulative
            .iter()
            .find(|(_, n)| *n >= needed)
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
    }

    /// The share of observations at or under `bound` (a bucket bound).
    pub fn share_within(&self, bound: f64) -> Option<f64> {
        let count = self.count();
        let within = self.cumulative.iter().find(|(le, _)| *le == bound)?.1;
        (count > 0).then(|| within as f64 / count as f64)
    }
}

/// The sum of histogram `name` over its series (`{name}_sum`); 0 where there is none.
fn sum_of(text: &str, name: &str) -> anyhow::Result<f64> {
    let prefix = format!("{name}_sum");
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let value = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ").map(|(_, value)| value),
            None => rest.strip_prefix(' '),
        };
        let Some(value) = value else {
            continue;
        };
        let value = value.split_whitespace().next().unwrap_or_default();
        sum += value
            .parse::<f64>()
            .with_context(|| format!("bad sum in: {line}"))?;
    }
    Ok(sum)
}

/// Fetches `url` and reads histogram `name` from it.
pub async fn scrape(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<Buckets> {
    let text = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("failed to fetch {url}"))?
        .text()
        .await
        .with_context(|| format!("failed to read {url}"))?;
    Buckets::parse(&text, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP confer_sfu_forward_delay_seconds Time.
# TYPE confer_sfu_forward_delay_seconds histogram
confer_sfu_forward_delay_seconds_bucket{le=\"0.0001\"} 10
confer_sfu_forward_delay_seconds_bucket{le=\"0.001\"} 20
confer_sfu_forward_delay_seconds_bucket{le=\"+Inf\"} 20
confer_sfu_forward_delay_seconds_sum 0.01
confer_sfu_forward_delay_seconds_count 20
confer_sfu_other_bucket{le=\"1\"} 5
";

    const AFTER: &str = "\
confer_sfu_forward_delay_seconds_bucket{le=\"0.0001\"} 910
confer_sfu_forward_delay_seconds_bucket{le=\"0.001\"} 1015
confer_sfu_forward_delay_seconds_bucket{le=\"+Inf\"} 1020
confer_sfu_forward_delay_seconds_sum 0.51
";

    #[test]
    fn reads_cumulative_buckets_and_subtracts_the_earlier_reading() {
        let before = Buckets::parse(BEFORE, FORWARD_DELAY).expect("parses");
        assert_eq!(
            before.cumulative,
            vec![(0.0001, 10), (0.001, 20), (f64::INFINITY, 20)]
        );
        let window = Buckets::parse(AFTER, FORWARD_DELAY)
            .expect("parses")
            .since(&before);
        assert_eq!(window.count(), 1000);
        let mean = window.mean().expect("observations");
        assert!((mean - 0.0005).abs() < 1e-12, "mean {mean}");
        assert_eq!(window.quantile_bound(0.5), Some(0.0001));
        assert_eq!(window.quantile_bound(0.9), Some(0.0001));
        assert_eq!(window.quantile_bound(0.99), Some(0.001));
        // The last 0.5 % lie past the last finite bound.
        assert_eq!(window.quantile_bound(0.999), None);
        assert_eq!(window.share_within(0.001), Some(0.995));
        assert_eq!(window.share_within(0.5), None, "not a bucket bound");
    }

    #[test]
    fn sums_every_series_of_a_labelled_histogram() {
        let text = "\
confer_sfu_forward_delay_seconds_bucket{worker=\"0\",le=\"+Inf\"} 2
confer_sfu_forward_delay_seconds_sum{worker=\"0\"} 0.25
confer_sfu_forward_delay_seconds_sum{worker=\"1\"} 0.5
confer_sfu_forward_delay_seconds_sum_other 9
";
        let buckets = Buckets::parse(text, FORWARD_DELAY).expect("parses");
        assert!((buckets.sum - 0.75).abs() < 1e-12, "sum {}", buckets.sum);
    }

    #[test]
    fn missing_or_broken_histograms_are_errors() {
        assert!(Buckets::parse("up 1\n", FORWARD_DELAY).is_err());
        assert!(
            Buckets::parse(
                "confer_sfu_forward_delay_seconds_bucket{le=\"x\"} 1\n",
                FORWARD_DELAY
            )
            .is_err()
        );
        assert!(
            Buckets::parse(
                "confer_sfu_forward_delay_seconds_bucket{le=\"1\"} many\n",
                FORWARD_DELAY
            )
            .is_err()
        );
        let empty = Buckets::parse(
            "confer_sfu_forward_delay_seconds_bucket{le=\"+Inf\"} 0\n",
            FORWARD_DELAY,
        )
        .expect("parses");
        assert_eq!(empty.quantile_bound(0.99), None);
        assert_eq!(empty.mean(), None);
        assert!(
            Buckets::parse(
                "confer_sfu_forward_delay_seconds_bucket{le=\"1\"} 1\nconfer_sfu_forward_delay_seconds_sum lots\n",
                FORWARD_DELAY
            )
            .is_err()
        );
        assert_eq!(empty.share_within(f64::INFINITY), None);
    }
}
