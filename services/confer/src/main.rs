//! `confer <role>`: every Confer service and tool in one binary.

mod cli;
mod roles;

use clap::Parser as _;

/// mimalloc: the services allocate and free many small, short-lived buffers across
/// threads (frames, messages, futures), where it is markedly cheaper than glibc's
/// malloc (BENCHMARKS.md, chat fan-out).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's channel starts on this runtime.
    let _entered = runtime.enter();
    let telemetry = match roles::init_telemetry(&cli) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = roles::run(cli.command, &runtime);
    drop(telemetry);
    code
}
