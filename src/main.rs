//! The `dwprov` binary: parse arguments, run, map the outcome to an exit code.
fn main() {
    // Rust ignores SIGPIPE; a CLI piped into `head` should simply stop.
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(dwprov::cli::main());
}
