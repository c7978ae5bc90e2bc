//! Outside checkers the suites feed text to: promtool, Python's reference OpenMetrics
//! parser.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs a checker with `input` on stdin; its combined output, or an error if it failed.
pub fn check(program: &str, args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| anyhow::anyhow!("{program} did not run: {err}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        output.status.success(),
        "{program} {args:?} refused:\n{text}\n---\n{input}"
    );
    Ok(text)
}

/// A Python program printing the families (`name:type`) that the reference
/// OpenMetrics parser reads from stdin; it fails on text that is not OpenMetrics.
pub const OPENMETRICS_PARSE: &str = "\
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
print(' '.join(sorted(f.name + ':' + f.type for f in families)))
";
