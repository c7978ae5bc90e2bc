//! `confer token`: mint an access token, as a tenant's backend would.

use std::time::{SystemTime, UNIX_EPOCH};

use confer_auth::{Claims, TokenKey, VideoGrant};

use crate::cli::TokenArgs;

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = TokenKey::new(args.issuer.clone(), args.secret.as_bytes());
    let claims = Claims {
        iss: args.issuer,
        sub: args.identity,
        name: args.name,
        nbf: now,
        exp: now + args.ttl,
        kind: Default::default(),
        video: VideoGrant {
            room_admin: args.admin,
            can_publish: !args.viewer,
            ..VideoGrant::join(args.room)
        },
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", key.sign(&claims));
    }
    Ok(())
}
