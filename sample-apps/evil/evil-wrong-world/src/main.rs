//! Evil app: a plain WASI command (exports `wasi:cli/run`), built against the wrong world.

fn main() {
    println!("I am a command, not an ingestion app");
}
