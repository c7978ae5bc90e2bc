//! `confer crd`: the CustomResourceDefinitions, as YAML on standard output
//! (`confer crd | kubectl apply --server-side -f -`), or one file per CRD.

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::CrdArgs;

pub fn run(args: CrdArgs) -> anyhow::Result<()> {
    let Some(dir) = args.out_dir else {
        let yaml = confer_operator::crd::yaml().context("failed to render the CRDs")?;
        return std::io::stdout()
            .write_all(yaml.as_bytes())
            .context("failed to write the CRDs");
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for (name, text) in confer_operator::crd::files().context("failed to render the CRDs")? {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}
