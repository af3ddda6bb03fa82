//! The `stomp` command-line tool (work in progress).
fn main() {
    eprintln!("stomp: not built yet");
    std::process::exit(2);
}
