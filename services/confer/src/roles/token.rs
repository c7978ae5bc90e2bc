//! `confer token`: mint an access token, as a tenant's backend would.

use std::time::{SystemTime, UNIX_EPOCH};

use confer_auth::{Claims, ParticipantKind, TokenKey, VideoGrant};

use crate::cli::{TokenArgs, TokenKind};

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = TokenKey::new(args.issuer.clone(), args.secret.as_bytes());
    let token = key.sign(&claims(args, now));
    #[allow(clippy::print_stdout)]
    {
        println!("{token}");
    }
    Ok(())
}

/// What the token says, minted at `now` (Unix seconds).
fn claims(args: TokenArgs, now: u64) -> Claims {
    Claims {
        iss: args.issuer,
        sub: args.identity,
        name: args.name,
        nbf: now,
        exp: now + args.ttl,
        kind: match args.kind {
            TokenKind::Standard => ParticipantKind::Standard,
            TokenKind::Sip => ParticipantKind::Sip,
        },
        video: VideoGrant {
            room_admin: args.admin,
            can_publish: !args.viewer,
            can_subscribe: !args.no_subscribe,
            can_publish_data: !args.no_data,
            hidden: args.hidden,
            can_publish_sources: args.sources,
            ..VideoGrant::join(args.room)
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The claims `confer token <args>` signs, read back through the verifier the
    /// room service uses.
    fn minted(args: &[&str]) -> Result<Claims, String> {
        let base = [
            "confer",
            "token",
            "--room",
            "hall",
            "--identity",
            "ada",
            "--secret",
            "s",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(args)).map_err(|err| err.to_string())?;
        let Command::Token(args) = cli.command else {
            return Err("not the token role".into());
        };
        let now = 1_800_000_000;
        let token = TokenKey::new("dev", b"s").sign(&claims(args, now));
        TokenKey::new("dev", b"s")
            .verify_join(&token, "hall", now)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn a_plain_token_may_do_everything_a_participant_does() {
        let claims = minted(&[]).unwrap();
        let grant = &claims.video;
        assert_eq!(claims.kind, ParticipantKind::Standard);
        assert!(grant.room_join && grant.can_publish && grant.can_subscribe);
        assert!(grant.can_publish_data && !grant.hidden && !grant.room_admin);
        assert!(grant.can_publish_sources.is_empty(), "every source");
        assert_eq!(claims.exp - claims.nbf, 6 * 3600);
    }

    #[test]
    fn each_flag_narrows_or_widens_the_grant_it_names() {
        let claims = minted(&[
            "--no-subscribe",
            "--no-data",
            "--hidden",
            "--sources",
            "microphone,screen_share",
            "--kind",
            "sip",
        ])
        .unwrap();
        let grant = &claims.video;
        assert_eq!(claims.kind, ParticipantKind::Sip);
        assert!(grant.can_publish && !grant.can_subscribe && !grant.can_publish_data);
        assert!(grant.hidden);
        assert_eq!(grant.can_publish_sources, ["microphone", "screen_share"]);
        assert!(minted(&["--admin"]).unwrap().video.room_admin);
        assert!(!minted(&["--viewer"]).unwrap().video.can_publish);
    }

    #[test]
    fn unknown_sources_and_kinds_and_contradictions_are_refused() {
        for args in [
            &["--sources", "hologram"][..],
            &["--kind", "robot"],
            &["--viewer", "--admin"],
            &["--viewer", "--sources", "camera"],
        ] {
            let refused = minted(args).expect_err("refused");
            assert!(!refused.is_empty(), "{args:?}");
        }
    }
}
