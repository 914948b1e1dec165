//! The committed `include/vshm.h` must be what cbindgen generates from the
//! sources. `VSHM_BLESS=1 cargo test -p vshm --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // The version macros come from the crate version (Cargo.toml), so a
    // version bump makes this test fail until the header is regenerated.
    let version = format!(
        "\n/* The version of this header; vshm_version() is the library's. */\n\
         #define VSHM_VERSION_MAJOR {}\n\
         #define VSHM_VERSION_MINOR {}\n\
         #define VSHM_VERSION_PATCH {}\n\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    );
    config.after_includes = Some(version + config.after_includes.as_deref().unwrap_or(""));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8 header");
    let path = dir.join("include/vshm.h");
    if std::env::var_os("VSHM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/vshm.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "client-c/include/vshm.h is out of date: run `VSHM_BLESS=1 cargo test -p vshm --test header` and commit it"
    );
}

#[test]
fn every_exported_symbol_is_prefixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(dir.join("include/vshm.h")).expect("header");
    let mut functions = 0;
    for line in header.lines() {
        // Top-level function declarations start in column 0 with their
        // return type: "<type> name(".
        let is_decl = !line.starts_with([' ', '/', '*', '#', '}', '\t'])
            && !line.starts_with("typedef")
            && !line.starts_with("extern")
            && line.contains('(');
        if is_decl {
            let before = &line[..line.find('(').expect("contains (")];
            let name = before.rsplit([' ', '*']).next().unwrap_or("");
            assert!(
                name.starts_with("vshm_"),
                "unprefixed function in vshm.h: {line}"
            );
            functions += 1;
        }
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            assert!(name.starts_with("VSHM_"), "unprefixed macro: {line}");
        }
        if let Some(rest) = line.strip_prefix("typedef ") {
            let name = rest
                .trim_end_matches(';')
                .rsplit([' ', '*', '('])
                .next()
                .unwrap_or("");
            assert!(
                name.starts_with("vshm_") || rest.contains("(*vshm_") || rest.ends_with('{'),
                "unprefixed type: {line}"
            );
        }
    }
    assert!(functions > 50, "found only {functions} functions in vshm.h");
}
