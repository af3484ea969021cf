//! Promises about the repository itself that are cheap to check on every run.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_is_on_the_architecture_map() {
    let map = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(map.contains(&format!("`{name}`")), "ARCHITECTURE.md does not describe crate {name}");
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("//!"), "{} does not start with a //! line", file.display());
    }
}

/// `deploy/faultline.service` passes `systemd-analyze verify` with nothing to say (unknown keys
/// and bad values are only warnings there, so any output fails the test), with ExecStart
/// pointing at the binary under test.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(workspace().join("deploy/faultline.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/faultline "), "the unit runs the installed binary");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/faultline", env!("CARGO_BIN_EXE_faultline"))).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (apt-get install systemd)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// The allocator options of `.cargo/config.toml` are built into the binary (the Sentry and
/// HTTP memory figures depend on them): jemalloc lists them when asked for its statistics.
#[test]
fn the_binary_allocates_with_the_options_of_the_cargo_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let config = std::fs::read_to_string(workspace().join(".cargo/config.toml")).unwrap();
    let options = config
        .lines()
        .find_map(|l| l.strip_prefix("JEMALLOC_SYS_WITH_MALLOC_CONF = "))
        .expect("the config names jemalloc's options")
        .trim_matches('"');
    assert!(stats.contains(&format!("config.malloc_conf: \"{options}\"")), "{stats}");
    for (name, value) in options.split(',').filter_map(|o| o.split_once(':')) {
        assert!(stats.contains(&format!("opt.{name}: {value}")), "opt.{name} is not {value}");
    }
}
