//! `confer sfu` as its own process with `--grpc-tls-*`: its control API answers a
//! client holding the deployment's certificate and nothing else. A role given a file
//! that is not what it should be, a key that is not its certificate's, or TLS flags
//! that do not fit together refuses to start and says why.

mod support;

use std::process::{Command, Stdio};

use confer_e2e::backing::{free_port, free_udp_port};
use confer_e2e::pki::TestCa;
use confer_proto::tls::{DEFAULT_NAME, GrpcTls};
use confer_sfu::core::TrackSource;
use confer_sfu::grpc::GrpcSfu;
use confer_sfu::{ParticipantId, SfuApi as _, SfuError};
use support::{CONFER, spawn, wait_listening};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sfu_process_serves_its_control_api_over_mutual_tls() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let files = ca.issue("sfu", DEFAULT_NAME)?;
    let control = free_port()?;
    let _sfu = spawn(
        &[
            "sfu",
            "--metrics-listen",
            "127.0.0.1:0",
            "--media-bind",
            &format!("127.0.0.1:{}", free_udp_port()?),
            "--media-workers",
            "1",
            "--control-listen",
            &format!("127.0.0.1:{control}"),
        ],
        &[
            ("CONFER_GRPC_TLS_CERT", path(&files.cert)),
            ("CONFER_GRPC_TLS_KEY", path(&files.key)),
            ("CONFER_GRPC_TLS_CA", path(&files.ca)),
        ],
    )?;
    let addr = format!("127.0.0.1:{control}").parse()?;
    wait_listening(addr)?;
    let block = |client: GrpcSfu| async move {
        client
            .set_blocked(ParticipantId::new("nobody"), TrackSource::ScreenShare, true)
            .await
    };

    // The SFU's own answer: there is no such peer.
    let tls = GrpcTls::load(&files)?;
    assert_eq!(
        block(GrpcSfu::connect(addr, Some(&tls))?).await,
        Err(SfuError::UnknownPeer)
    );
    // Without a certificate the call never reaches it.
    let plaintext = block(GrpcSfu::connect(addr, None)?).await;
    assert!(
        plaintext.is_err() && plaintext != Err(SfuError::UnknownPeer),
        "{plaintext:?}"
    );
    Ok(())
}

#[test]
fn roles_refuse_to_start_on_tls_files_or_flags_that_do_not_fit() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let files = ca.issue("sfu", DEFAULT_NAME)?;
    let other = ca.issue("other", DEFAULT_NAME)?;
    let sfu = |key: &std::path::Path| {
        refused(&[
            "sfu",
            "--metrics-listen",
            "127.0.0.1:0",
            "--media-bind",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
            "--grpc-tls-cert",
            path(&files.cert),
            "--grpc-tls-key",
            path(key),
            "--grpc-tls-ca",
            path(&files.ca),
        ])
    };

    // A key that is not the certificate's.
    let stderr = sfu(&other.key)?;
    let expected = format!(
        "key {} cannot be used with certificate {}",
        path(&other.key),
        path(&files.cert)
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // A key file that holds no key.
    std::fs::write(&files.key, "not a key")?;
    let stderr = sfu(&files.key)?;
    let expected = format!("key {} holds no PEM private key", path(&files.key));
    assert!(stderr.contains(&expected), "{stderr}");

    // An operator told to give SFU pods TLS must speak it itself.
    let stderr = refused(&[
        "operator",
        "--consul-addr",
        "http://127.0.0.1:1",
        "--room-service",
        "127.0.0.1:1",
        "--sfu-image",
        "confer:test",
        "--identity",
        "operator-0",
        "--sfu-grpc-tls-secret",
        "confer-grpc-tls",
    ])?;
    assert!(
        stderr.contains("--sfu-grpc-tls-secret and --grpc-tls-cert go together"),
        "{stderr}"
    );

    // A certificate without its key is refused before anything starts.
    let stderr = refused(&["sfu", "--grpc-tls-cert", path(&files.cert)])?;
    assert!(stderr.contains("--grpc-tls-key"), "{stderr}");
    Ok(())
}

/// Runs `confer <args>`, which must fail; what it wrote to stderr.
fn refused(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(CONFER)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(!output.status.success(), "{args:?} started: {stderr}");
    Ok(stderr)
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().unwrap_or_default()
}
