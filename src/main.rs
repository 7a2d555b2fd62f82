//! The `dwprov` binary: parse arguments, run, map the outcome to an exit code.
fn main() {
    std::process::exit(dwprov::cli::main());
}
