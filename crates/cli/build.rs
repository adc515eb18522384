//! Links `yurt` as a position-dependent executable on Linux. Every task runs under its own
//! `yurt executor` process, so the binary's start-up cost and resident memory are paid once per
//! task: a PIE build of this size applies ~34,000 relocations at every start, dirtying the
//! pages they touch (about 2 ms and 4 MiB per executor); a non-PIE build has them resolved at
//! link time.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=yurt=-no-pie");
    }
}
