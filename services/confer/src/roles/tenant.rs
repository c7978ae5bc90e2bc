//! `confer tenant`: operator commands on tenants.

use anyhow::Context as _;
use confer_room::store::{MasterKey, Store};

use crate::cli::{TenantArgs, TenantCommand};

pub async fn run(args: TenantArgs) -> anyhow::Result<()> {
    let key = MasterKey::from_base64(&args.master_key).context("CONFER_MASTER_KEY")?;
    let store = Store::connect(&args.database_url, key).await?;
    match args.command {
        TenantCommand::Create { name } => {
            let created = store.create_tenant(&name).await?;
            // The secret is shown this once; only its sealed form is stored.
            #[allow(clippy::print_stdout)]
            {
                println!("tenant:     {}", created.tenant);
                println!("api key:    {}", created.api_key);
                println!("api secret: {}", created.api_secret);
            }
        }
    }
    Ok(())
}
