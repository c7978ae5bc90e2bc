//! Metrics exposition for every role's `/metrics`: the Prometheus text format (0.0.4)
//! or OpenMetrics 1.0, whichever the scraper asks for, from the same calls.
//!
//! Deliberately small: the roles keep their own atomics and hand snapshots to an
//! [`Exposition`]. What this crate owns is what is easy to get subtly wrong: counter
//! naming (`_total` samples, the family name without it in OpenMetrics), label
//! escaping, cumulative histogram buckets with `+Inf`, and the closing `# EOF`.
//! Labels are for bounded sets only (a reason code, a health state), never room or
//! participant ids.

mod histogram;
mod labeled;
mod pool;

use std::fmt::Write as _;

pub use histogram::{Histogram, HistogramSnapshot, Tally};
pub use labeled::LabeledCounter;
pub use pool::PoolUse;

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header offers it (as Prometheus's scraper does),
    /// the Prometheus text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// One scrape's text, built family by family.
pub struct Exposition {
    format: Format,
    out: String,
}

impl Exposition {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            out: String::new(),
        }
    }

    /// A counter family; `name` without the `_total` suffix every sample carries.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        let family = match self.format {
            Format::Prometheus => format!("{name}_total"),
            Format::OpenMetrics => name.to_owned(),
        };
        self.header(&family, help, "counter");
        for (labels, value) in samples {
            self.sample(&format!("{name}_total"), labels, &value.to_string());
        }
    }

    /// An unlabelled counter.
    pub fn counter1(&mut self, name: &str, help: &str, value: u64) {
        self.counter(name, help, &[(&[], value)]);
    }

    /// A counter family with one label: a sample per value of `label` in `counts`
    /// (what a [`LabeledCounter`] holds).
    pub fn counter_by(&mut self, name: &str, help: &str, label: &str, counts: &[(String, u64)]) {
        let labels: Vec<[(&str, &str); 1]> = counts
            .iter()
            .map(|(value, _)| [(label, value.as_str())])
            .collect();
        let samples: Vec<(Labels<'_>, u64)> = labels
            .iter()
            .zip(counts)
            .map(|(labels, (_, n))| (labels.as_slice(), *n))
            .collect();
        self.counter(name, help, &samples);
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.header(name, help, "gauge");
        for (labels, value) in samples {
            self.sample(name, labels, &number(*value));
        }
    }

    /// A gauge family with one label: a sample per value of `label` in `values`.
    pub fn gauge_by(&mut self, name: &str, help: &str, label: &str, values: &[(String, u64)]) {
        let labels: Vec<[(&str, &str); 1]> = values
            .iter()
            .map(|(value, _)| [(label, value.as_str())])
            .collect();
        let samples: Vec<(Labels<'_>, f64)> = labels
            .iter()
            .zip(values)
            .map(|(labels, (_, n))| (labels.as_slice(), *n as f64))
            .collect();
        self.gauge(name, help, &samples);
    }

    /// An unlabelled gauge.
    pub fn gauge1(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, &[(&[], value)]);
    }

    /// A histogram family with one (unlabelled) histogram.
    pub fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        self.histograms(name, help, &[(&[], snapshot)]);
    }

    /// A histogram family with a histogram per label set.
    pub fn histograms(
        &mut self,
        name: &str,
        help: &str,
        histograms: &[(Labels<'_>, &HistogramSnapshot)],
    ) {
        self.header(name, help, "histogram");
        let (bucket, sum, count) = (
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        );
        for (labels, snapshot) in histograms {
            let mut cumulative = 0;
            let bounds: Vec<String> = snapshot.bounds.iter().map(|b| number(*b)).collect();
            let counts = bounds
                .iter()
                .map(String::as_str)
                .zip(snapshot.counts.iter().map(|n| {
                    cumulative += n;
                    cumulative
                }))
                .chain([("+Inf", snapshot.count)]);
            for (le, n) in counts {
                let mut with_le = labels.to_vec();
                with_le.push(("le", le));
                self.sample(&bucket, &with_le, &n.to_string());
            }
            self.sample(&sum, labels, &number(snapshot.sum));
            self.sample(&count, labels, &snapshot.count.to_string());
        }
    }

    /// Text written by another renderer in this format, appended as it is.
    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// The finished text (OpenMetrics ends with `# EOF`).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }

    fn header(&mut self, family: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {family} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A float as both formats spell it (integral values without a fraction).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
