//! The station daemon (in progress: the flowgraph arrives with the daemon issue).
fn main() {
    eprintln!("specwatch: the daemon is not built yet; use specwatch-train gen to make datasets");
    std::process::exit(2);
}
