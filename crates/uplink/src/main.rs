//! `uplink`: the orbit user's command line. Thin: the work is in [`uplink::cli`].

/// mimalloc: large piece and segment buffers are reused instead of being mapped and
/// zeroed afresh by the system allocator each time (docs/network.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match uplink::cli::run(std::env::args_os(), &mut std::io::stdout()).await {
        // Usage errors and --help print clap's way, with its exit codes.
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(usage) => usage.exit(),
            Err(e) => Err(e),
        },
        ok => ok,
    }
}
