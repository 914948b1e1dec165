//! Compiles the printf-style command formatter (`src/fmt.c`: C, because
//! stable Rust cannot take a `va_list`) into the library, and makes the
//! cdylib export its symbols.
//!
//! rustc links a cdylib with a version script that exports only Rust's
//! `#[no_mangle]` items, and the linker would not even pull `fmt.o` out of
//! its archive since no Rust code calls it. So: `--undefined` pulls the
//! object in, and a second (anonymous) version script adds its symbols to
//! the export list; GNU ld merges the two scripts.
//!
//! The *installed* libvshm.so is not this cdylib: scripts/install-c.sh
//! links it from libvshm.a with `vshm.map` (symbol version VSHM_0, only
//! `vshm_*` exported), which cannot be done here, next to rustc's own
//! anonymous version script (GNU ld refuses to mix anonymous and named
//! version nodes; lld gives rustc's script precedence).

use std::path::PathBuf;

/// The functions defined in `src/fmt.c`.
const C_SYMBOLS: &[&str] = &[
    "vshm_command",
    "vshm_commandv",
    "vshm_submit_command",
    "vshm_submit_commandv",
    "vshm_command_opts",
    "vshm_commandv_opts",
    "vshm_submit_command_opts",
    "vshm_submit_commandv_opts",
    "vshm_batch_add_command",
    "vshm_batch_add_commandv",
];

fn main() {
    println!("cargo:rerun-if-changed=src/fmt.c");
    println!("cargo:rerun-if-changed=include/vshm.h");
    // Bootstrap: the header is generated from this crate (tests/header.rs),
    // so on a first build without it the formatter cannot compile yet.
    let header = std::fs::read_to_string("include/vshm.h").unwrap_or_default();
    if !header.contains("VSHM_H") {
        println!("cargo:warning=include/vshm.h is missing: building without src/fmt.c; run `VSHM_BLESS=1 cargo test -p vshm --test header`");
        return;
    }
    cc::Build::new()
        .file("src/fmt.c")
        .include("include")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c99")
        .compile("vshm_fmt");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let map = out.join("vshm_fmt.map");
    let mut text = String::from("{\n  global:\n");
    for s in C_SYMBOLS {
        text.push_str(&format!("    {s};\n"));
    }
    text.push_str("};\n");
    std::fs::write(&map, text).expect("write version script");
    for s in C_SYMBOLS {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined={s}");
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvshm.so.0");
}
