//! Lays out the functions the daemon runs together at the start of its code,
//! in release builds, so that its resident code is what it runs rather than
//! most of the binary (docs/PERFORMANCE.md, "Fixed memory"). The order is
//! `code-order.txt`, written by `bench/code_order.py`; the linker takes it
//! as `--symbol-ordering-file` (lld, Rust's default linker on x86-64 Linux).
//! Where the linker does not know that option the build goes on without it,
//! saying so: the layout changes memory, never behaviour.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-env-changed=PMTR_CODE_ORDER");
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var_os("PMTR_CODE_ORDER").is_some_and(|v| v == "off")
    {
        return;
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = manifest.join("code-order.txt");
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    match linker_takes(&args) {
        Ok(()) => {
            for arg in args {
                println!("cargo:rustc-link-arg-bin=pmtr={arg}");
            }
        }
        Err(why) => println!(
            "cargo:warning=pmtr's code is linked in the default order ({why}); \
             its resident memory is larger (PMTR_CODE_ORDER=off silences this)"
        ),
    }
}

/// Whether rustc, as this build calls it, links a program with `args`.
fn linker_takes(args: &[String]) -> Result<(), String> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let source = out.join("link_probe.rs");
    std::fs::write(&source, "fn main() {}\n").map_err(|e| e.to_string())?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut probe = Command::new(rustc);
    probe.arg(&source).arg("-o").arg(out.join("link_probe"));
    if let Ok(target) = std::env::var("TARGET") {
        probe.args(["--target", &target]);
    }
    // The flags this build passes to rustc (a linker chosen there, say).
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        probe.args(flags.split('\u{1f}').filter(|flag| !flag.is_empty()));
    }
    for arg in args {
        probe.arg("-C").arg(format!("link-arg={arg}"));
    }
    let output = probe
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .find(|line| line.contains("symbol-ordering-file") || line.contains("unrecognized"))
        .unwrap_or("the linker refused --symbol-ordering-file");
    Err(reason.trim().to_owned())
}
